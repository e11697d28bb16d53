"""Checks hfmesh's cache trees with the real `huggingface_hub` client.

Driven by tests/hf_compat.rs. Subcommands:
  download  REPO --type T --revision R --cache-dir C [--token TOK]   snapshot_download, print the path
  compare   A B                                                         trees identical (names, links, bytes, refs)
  offline   C REPO --type T --revision R                                load every file offline; scan_cache_dir clean

Exit status 0 when the check holds; otherwise the differences are printed and the status is 1.
HF_ENDPOINT must point at the emulator for `download`.
"""

import argparse
import hashlib
import os
import sys


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def walk(root):
    """Map of relative path -> ('dir',) | ('link', target) | ('file', size, sha256)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir",)
            else:
                out[rel] = ("file", os.path.getsize(full), file_digest(full))
    return out


def cmd_download(args):
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id=args.repo,
        repo_type=args.type,
        revision=args.revision,
        cache_dir=args.cache_dir,
        token=args.token or False,
    )
    print(path)
    return 0


def cmd_compare(args):
    a, b = walk(args.a), walk(args.b)
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a:
            problems.append(f"only in {args.b}: {rel} {b[rel][:2]}")
        elif rel not in b:
            problems.append(f"only in {args.a}: {rel} {a[rel][:2]}")
        elif a[rel] != b[rel]:
            problems.append(f"differs: {rel}: {a[rel]} vs {b[rel]}")
    for p in problems:
        print(p)
    print(f"compared {len(a)} entries: {len(problems)} differences")
    return 1 if problems else 0


def cmd_offline(args):
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub
    from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download

    problems = []
    snap = snapshot_download(repo_id=args.repo, repo_type=args.type, revision=args.revision, cache_dir=args.cache_dir)
    files = []
    for dirpath, _, filenames in os.walk(snap):
        for name in filenames:
            files.append(os.path.relpath(os.path.join(dirpath, name), snap))
    if not files:
        problems.append("snapshot has no files")
    for rel in sorted(files):
        got = hf_hub_download(
            repo_id=args.repo, repo_type=args.type, revision=args.revision, filename=rel, cache_dir=args.cache_dir
        )
        real = os.path.realpath(got)
        blob_name = os.path.basename(real)
        size = os.path.getsize(real)
        if len(blob_name) == 64:
            actual = file_digest(real)
        else:
            h = hashlib.sha1()
            h.update(f"blob {size}\0".encode())
            with open(real, "rb") as f:
                while True:
                    block = f.read(1 << 20)
                    if not block:
                        break
                    h.update(block)
            actual = h.hexdigest()
        if actual != blob_name:
            problems.append(f"{rel}: content hash {actual} does not match blob name {blob_name}")
    info = scan_cache_dir(args.cache_dir)
    for w in info.warnings:
        problems.append(f"scan_cache_dir warning: {w}")
    repo_ids = {(r.repo_id, r.repo_type) for r in info.repos}
    if (args.repo, args.type) not in repo_ids:
        problems.append(f"scan_cache_dir does not report {args.type} {args.repo}: {sorted(repo_ids)}")
    for p in problems:
        print(p)
    print(f"huggingface_hub {huggingface_hub.__version__}: loaded {len(files)} files offline, {len(problems)} problems")
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download")
    d.add_argument("repo")
    d.add_argument("--type", default="model")
    d.add_argument("--revision", default="main")
    d.add_argument("--cache-dir", required=True)
    d.add_argument("--token")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    o = sub.add_parser("offline")
    o.add_argument("cache_dir")
    o.add_argument("repo")
    o.add_argument("--type", default="model")
    o.add_argument("--revision", default="main")
    args = parser.parse_args()
    return {"download": cmd_download, "compare": cmd_compare, "offline": cmd_offline}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
