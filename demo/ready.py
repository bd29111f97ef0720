"""Readiness endpoints for the demo's s3s-fs nodes, which have none of their own.

Usage: ready.py HEALTH_PORT S3_PORT IP [IP ...]

For every IP, serves GET /health/ready on IP:HEALTH_PORT: 200 while IP:S3_PORT
accepts a TCP connection, 503 otherwise. Every other path is a 404. One process
serves all the nodes, one thread per address; it runs until it is killed.
"""
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Ready(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.split("?", 1)[0] != "/health/ready":
            self.answer(404, b"not found\n")
        elif self.s3_accepts():
            self.answer(200, b"ready\n")
        else:
            self.answer(503, b"s3 port closed\n")

    def s3_accepts(self):
        ip = self.server.server_address[0]
        try:
            with socket.create_connection((ip, self.server.s3_port), timeout=0.5):
                return True
        except OSError:
            return False

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip())
    health_port, s3_port = int(sys.argv[1]), int(sys.argv[2])
    servers = []
    for ip in sys.argv[3:]:
        server = ThreadingHTTPServer((ip, health_port), Ready)
        server.daemon_threads = True
        server.s3_port = s3_port
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
