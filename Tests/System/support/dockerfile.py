"""Reads a Dockerfile the way the image build would, for scripts/check-deploy (no Docker engine runs here).

    dockerfile.py Dockerfile build-copies      one "SRC<TAB>DEST" per COPY of the first stage (no --from)
    dockerfile.py Dockerfile build-commands    the first stage's RUN steps from its WORKDIR on, one per line
    dockerfile.py Dockerfile base-image        the first stage's FROM image
    dockerfile.py Dockerfile runtime-packages  the apt-get install packages of the last stage
    dockerfile.py Dockerfile healthcheck       the last stage's HEALTHCHECK CMD, exec form, one word per line
    dockerfile.py Dockerfile runtime-binary    the path the last stage copies from the build stage
    dockerfile.py Dockerfile prune DIR         removes from DIR (a replayed context) what .dockerignore keeps out

Only the Dockerfile shapes this project uses are understood (exec-form HEALTHCHECK, one COPY source per line);
anything else is an error, so a change the check cannot follow fails loudly instead of being skipped.
"""

import fnmatch
import json
import os
import shlex
import shutil
import sys


def instructions(path):
    """(keyword, text) pairs with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            keyword, _, rest = pending.strip().partition(" ")
            logical.append((keyword.upper(), rest.strip()))
        pending = ""
    return logical


def stages(path):
    result = []
    for keyword, rest in instructions(path):
        if keyword == "FROM":
            result.append({"from": rest, "steps": []})
        elif result:
            result[-1]["steps"].append((keyword, rest))
    if len(result) < 2:
        sys.exit("dockerfile.py: expected a build stage and a runtime stage")
    return result


def ignored_matcher(path):
    """.dockerignore's rules (beside the Dockerfile): patterns relative to the context root, `**` for any depth, `!` to
    re-include, the last matching rule winning; a directory that matches takes its contents with it."""
    rules = []
    ignore = os.path.join(os.path.dirname(os.path.abspath(path)), ".dockerignore")
    if os.path.exists(ignore):
        for line in open(ignore, encoding="utf-8"):
            line = line.strip()
            if line and not line.startswith("#"):
                negate = line.startswith("!")
                pattern = os.path.normpath(line.lstrip("!").strip("/"))
                rules.append((negate, pattern.replace("**/", "*").replace("**", "*")))

    def ignored(relative):
        verdict = False
        parts = relative.split("/")
        for negate, pattern in rules:
            if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
                verdict = not negate
        return verdict

    return ignored


def main():
    path, what = sys.argv[1], sys.argv[2]
    all_stages = stages(path)
    build, runtime = all_stages[0], all_stages[-1]
    if what == "base-image":
        print(build["from"].split()[0])
    elif what == "build-copies":
        for keyword, rest in build["steps"]:
            if keyword == "COPY":
                words = shlex.split(rest)
                if any(w.startswith("--") for w in words) or len(words) != 2:
                    sys.exit(f"dockerfile.py: COPY {rest!r}: one source and a destination, no flags, please")
                print(f"{words[0]}\t{words[1]}")
    elif what == "build-commands":
        seen_workdir = False
        for keyword, rest in build["steps"]:
            seen_workdir = seen_workdir or keyword == "WORKDIR"
            if keyword == "RUN" and seen_workdir:
                print(rest)
    elif what == "runtime-packages":
        for keyword, rest in runtime["steps"]:
            if keyword != "RUN":
                continue
            for command in rest.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["apt-get", "install"]:
                    print("\n".join(w for w in words[2:] if not w.startswith("-")))
    elif what == "healthcheck":
        for keyword, rest in runtime["steps"]:
            if keyword == "HEALTHCHECK":
                _, _, command = rest.partition("CMD ")
                words = json.loads(command)
                print("\n".join(words))
                return
        sys.exit("dockerfile.py: the runtime stage has no HEALTHCHECK")
    elif what == "runtime-binary":
        for keyword, rest in runtime["steps"]:
            if keyword == "COPY" and rest.startswith("--from="):
                print(shlex.split(rest)[-1])
                return
        sys.exit("dockerfile.py: the runtime stage copies nothing from the build stage")
    elif what == "prune":
        root, ignored, removed = sys.argv[3], ignored_matcher(path), 0
        for directory, subdirectories, files in os.walk(root, topdown=True):
            for name in list(subdirectories) + files:
                full = os.path.join(directory, name)
                if ignored(os.path.relpath(full, root)):
                    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
                    removed += 1
                    if name in subdirectories:
                        subdirectories.remove(name)
        print(removed)
    else:
        sys.exit(f"dockerfile.py: unknown question {what!r}")


if __name__ == "__main__":
    main()
