"""One module per tutorial experiment: `python -m experiments.<name> --help`."""
