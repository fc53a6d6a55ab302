# Looks for a secret, given reversed (so that it appears in no command line or file), everywhere a sandboxed
# process can read: the files under the given roots and every process's environment. Prints each place it
# is found, then `searched N files`.
import os, sys

secret = sys.argv[1][::-1].encode()
roots = sys.argv[2:]
found, searched = [], 0

def check(path):
    global searched
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except OSError:
        return
    searched += 1
    if secret in data:
        found.append(path)

for root in roots:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                check(p)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        check(f"/proc/{pid}/environ")
        check(f"/proc/{pid}/cmdline")
for p in found:
    print("found in", p)
print("searched", searched, "files")
