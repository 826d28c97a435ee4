# Open one TCP connection to HOST PORT and print the line the lab's recording server answers
# with: the source address it saw ("failed: ..." when the connection fails).
import socket
import sys

try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as conn:
        print(conn.makefile().readline().strip())
except OSError as exc:
    print('failed: %s' % exc)
