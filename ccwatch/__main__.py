from ccwatch.commands.cli import main

main()
