"""The desk's pages, one module per group of the navigation; their views attach to pipeline.desk.web.bp."""
