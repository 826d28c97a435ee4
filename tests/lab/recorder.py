"""The lab's recording TCP server (stdlib only; run inside a namespace).

    python recorder.py LOGFILE PORT [PORT ...]

Each connection is answered with one line, the peer address the server saw,
and that address is appended to LOGFILE as "ADDRESS PORT". After that line the
server echoes whatever the client sends, so a long-lived connection can prove
it still carries data both ways. Prints "ready" once every port listens.
"""
import socket
import sys
import threading

_LOG_LOCK = threading.Lock()


def peer_text(address):
    """'::ffff:198.51.100.2' -> '198.51.100.2' (IPv4 clients of a dual-stack socket)."""
    if address.startswith('::ffff:') and '.' in address:
        return address[len('::ffff:'):]
    return address


def listener(port):
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        bind = ('::', port)
    except OSError:  # IPv6 disabled on this machine
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        bind = ('0.0.0.0', port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(bind)
    sock.listen(128)
    return sock


def serve_connection(conn, peer, port, log_path):
    with conn:
        with _LOG_LOCK, open(log_path, 'a') as log:
            log.write('%s %d\n' % (peer, port))
        try:
            conn.sendall((peer + '\n').encode())
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def accept_loop(sock, port, log_path):
    while True:
        conn, address = sock.accept()
        threading.Thread(target=serve_connection, args=(conn, peer_text(address[0]), port, log_path),
                         daemon=True).start()


def main(argv):
    log_path, ports = argv[0], [int(port) for port in argv[1:]]
    sockets = [(listener(port), port) for port in ports]
    open(log_path, 'a').close()
    for sock, port in sockets:
        threading.Thread(target=accept_loop, args=(sock, port, log_path), daemon=True).start()
    sys.stdout.write('ready\n')
    sys.stdout.flush()
    sys.stdout.close()
    threading.Event().wait()


if __name__ == '__main__':
    main(sys.argv[1:])
