from siem.cli import main

main()
