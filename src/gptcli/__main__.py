from gptcli import main

main()
