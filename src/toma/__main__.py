from toma.cli import main

main()
