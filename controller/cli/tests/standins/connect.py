# Opens a tunnel through the egress proxy named by HTTPS_PROXY and speaks TLS in it, presenting SNI, then
# asks for /. Prints the proxy's refusal (status line and body), `cut: …` when the connection is dropped, or
# the server's answer. Certificates are not checked: the point is what the proxy does.
import base64, os, socket, ssl, sys
from urllib.parse import urlsplit

host, port, sni = sys.argv[1], int(sys.argv[2]), sys.argv[3]
proxy = urlsplit(os.environ["HTTPS_PROXY"])
auth = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
s = socket.create_connection((proxy.hostname, proxy.port), timeout=20)
s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    chunk = s.recv(4096)
    if not chunk:
        break
    head += chunk
status = head.split(b"\r\n", 1)[0].decode()
if " 200" not in status:
    headers, body = head.split(b"\r\n\r\n", 1) if b"\r\n\r\n" in head else (head, b"")
    length = 0
    for line in headers.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    # The proxy may keep the connection open after its answer: read the body it announced, no more.
    try:
        while len(body) < length:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    print(status)
    print(body.decode(errors="replace"))
    sys.exit(0)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    answer = b""
    while True:
        chunk = t.recv(4096)
        if not chunk:
            break
        answer += chunk
    print("answer:", answer.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip())
except (OSError, ssl.SSLError) as e:
    print(f"cut: {e}")
