"""`python -m hub` runs the `synapse` command line."""

from cli.main import main

main()
