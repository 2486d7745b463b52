"""The city federation's view across its districts: city.yaml (config.py), the figures of each district
(figures.py), the workbook (workbook.py), the page (page.py) and `intake city report|serve` (cli.py)."""
