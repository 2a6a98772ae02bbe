from hpcrun.cli import main

main()
