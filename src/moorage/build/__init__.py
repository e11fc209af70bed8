"""``moor build``: Dockerfile frontend, build context, stage execution, layer cache."""
