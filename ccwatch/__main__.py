from ccwatch.cli import main

main()
