from plexus.cli import main

main()
