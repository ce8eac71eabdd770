"""Data pipeline helpers of monai_unets."""
