"""The command line, one module per command; each is light to import (heavy imports run inside the command)."""
