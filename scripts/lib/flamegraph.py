"""Folds `perf script` output into stacks and draws them as a flame graph (SVG), with a text summary of where the
samples went. Written for scripts/profile; reads perf's default `perf script` format (a header line per sample, then
one frame per line, innermost first, a blank line between samples).

    python3 flamegraph.py PERF_SCRIPT_TEXT OUT.svg TITLE [FOLDED_OUT]
"""
import collections
import html
import re
import sys

FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.*?)(?:\+0x[0-9a-f]+)?\s+\((.*)\)\s*$")


def simplify(name, library):
    if name in ("[unknown]", ""):
        return f"[{library.rsplit('/', 1)[-1]}]"
    # Drop generic arguments and closure numbering noise that makes the same code look like many frames.
    name = re.sub(r"\bclosure #\d+", "closure", name)
    name = re.sub(r"\s+in\s+", " in ", name)
    return name.replace(";", ",")[:200]


def fold(lines):
    stacks = collections.Counter()
    frames = []
    for line in lines + [""]:
        if not line.strip():
            if frames:
                stacks[";".join(reversed(frames))] += 1
            frames = []
            continue
        match = FRAME.match(line)
        if match:
            frames.append(simplify(match.group(1), match.group(2)))
        elif frames:
            continue
    return stacks


def tree(stacks):
    root = {"name": "all", "value": 0, "children": {}}
    for stack, count in stacks.items():
        node = root
        node["value"] += count
        for frame in stack.split(";"):
            node = node["children"].setdefault(frame, {"name": frame, "value": 0, "children": {}})
            node["value"] += count
    return root


def color(name):
    h = sum(map(ord, name)) % 60
    if "Redis" in name or "hiredis" in name or "redis" in name:
        return f"rgb(90,{140 + h},220)"
    if "[kernel" in name or name.startswith("__") or "syscall" in name:
        return f"rgb({200 + h // 2},{120 + h},90)"
    return f"rgb(230,{100 + h * 2},{50 + h // 2})"


def svg(root, title, width=1800, row=16):
    total = root["value"]
    rects = []
    depth_max = [0]

    def walk(node, x, depth):
        depth_max[0] = max(depth_max[0], depth)
        w = node["value"] / total * width
        if w < 0.3:
            return
        rects.append((x, depth, w, node["name"], node["value"]))
        child_x = x
        for child in sorted(node["children"].values(), key=lambda c: c["name"]):
            walk(child, child_x, depth + 1)
            child_x += child["value"] / total * width

    walk(root, 0.0, 0)
    height = (depth_max[0] + 3) * row + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="11">',
        f'<rect width="100%" height="100%" fill="#fdfdf6"/>',
        f'<text x="8" y="20" font-size="15">{html.escape(title)}</text>',
    ]
    for x, depth, w, name, value in rects:
        y = height - (depth + 1) * row - 10
        label = f"{name} ({value} samples, {value / total * 100:.1f} %)"
        out.append(f'<g><title>{html.escape(label)}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                   f'fill="{color(name)}"/>')
        chars = int(w / 6.6)
        if chars >= 4:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


# Where a sample's time belongs: the deepest frame naming one of these (a handler's own work, not what it calls on).
COMPONENTS = [
    ("NIO: socket reads", "readFromSocket"), ("NIO: HTTP/1 decoder", "ByteToMessageHandler"), ("NIO: HTTP/1 decoder", "HTTPDecoder"),
    ("NIO: HTTP/1 encoder", "HTTPResponseEncoder"), ("NIO: HTTPTypes conversion", "HTTP1ToHTTPServerCodec"),
    ("NIO: channel head (writes, flush)", "HeadChannelHandler"), ("NIO: pipelining assistance", "HTTPServerPipelineHandler"),
    ("Hummingbird: connection state", "HTTPConnectionStateHandler"), ("Hummingbird: async channel", "NIOAsyncChannel"),
    ("service: deadlines", "RequestDeadlines"), ("service: response budget", "RequestCounter"), ("service: inbound gate", "InboundGate"),
    ("service: EdgeHandler (rules, state, writes)", "EdgeHandler"), ("service: bearer token", "BearerAuthenticator"),
    ("service: telemetry (id, series, span)", "RequestTelemetry"), ("service: session store", "RedisSessionStore"),
    ("service: near cache", "NearCache"), ("service: response body and headers", "Routes.verified"),
    ("service: response body and headers", "addStandardHeaders"),
]


def components(stacks):
    """Samples per component: kernel work (any system call) first, else the deepest component frame."""
    shares = collections.Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        if "entry_SYSCALL_64_after_hwframe" in frames:
            shares["kernel: system calls (read, writev, epoll)"] += count
            continue
        found = "other (event loop, runtime, allocator)"
        for frame in frames:
            for name, marker in COMPONENTS:
                if marker in frame:
                    found = name
        shares[found] += count
    return shares


def summary(stacks, top=25):
    """Time per component, then self and inclusive time per frame, the largest first."""
    total = sum(stacks.values())
    shares = components(stacks)
    head = [f"{total} samples", "", "share %  component (a sample counts for the deepest component on its stack)"]
    head += [f"{c / total * 100:6.1f}  {name}" for name, c in shares.most_common()]
    self_time, inclusive = collections.Counter(), collections.Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = head + ["", "self %  frame"]
    lines += [f"{c / total * 100:5.1f}  {f}" for f, c in self_time.most_common(top)]
    lines += ["", "inclusive %  frame"]
    lines += [f"{c / total * 100:5.1f}  {f}" for f, c in inclusive.most_common(top * 2)]
    return "\n".join(lines)


if __name__ == "__main__":
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
    stacks = fold(text)
    with open(sys.argv[2], "w") as out:
        out.write(svg(tree(stacks), sys.argv[3]))
    if len(sys.argv) > 4:
        with open(sys.argv[4], "w") as out:
            out.writelines(f"{stack} {count}\n" for stack, count in stacks.most_common())
    print(summary(stacks))
