from edgeact.cli import main

main()
