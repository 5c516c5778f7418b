"""Differentiable ops: each module holds one family, each op its forward and backward side by side."""
