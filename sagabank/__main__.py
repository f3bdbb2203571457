from sagabank.cli import main

main()
