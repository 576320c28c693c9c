"""HTML pages of the task center, one module per area. Views parse input and call services."""
