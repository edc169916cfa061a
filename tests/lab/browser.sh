#!/usr/bin/env bash
# Lab test with a real browser: headless Chromium in bpx-cli loads the demo
# site from `bypass serve` and saves a screenshot ($ARTIFACTS/browser-demo.png).
# Checks that the browser fetched the page, its stylesheet and its image
# (access log, 200 each), that the DOM has the page's heading, and that the
# screenshot is a 1280x800 PNG showing the styled page with the logo (the
# PNG is decoded with python3's zlib: no imaging library needed).
source "$(dirname "$0")/lib.sh"

SITE="$ARTIFACTS/browser-site"
SHOT="$ARTIFACTS/browser-demo.png"
ACCESS="$ARTIFACTS/browser-access.log"
CHROMIUM_LOG="$ARTIFACTS/browser-chromium.log"
rm -rf "$SITE" && cp -r "$ROOT/www" "$SITE"
rm -f "$SHOT" "$ACCESS" "$CHROMIUM_LOG"
URL=http://10.99.0.1/

command -v chromium >/dev/null || { echo "browser: chromium missing: install it with scripts/deps" >&2; exit 1; }
# Chromium wants a writable home, config and cache; a throwaway one keeps
# every run alike and leaves nothing behind.
CHROME_HOME=$(mktemp -d /tmp/bypass-browser.XXXXXX)
trap 'cleanup; rm -rf "$CHROME_HOME"' EXIT

# chrome ARGS...: headless Chromium in bpx-cli, bounded in time. As root it
# needs --no-sandbox. The rest keeps it from reaching for the network
# (updates, sync) or the GPU. Its D-Bus complaints (no bus in the lab) are
# harmless and go to the log.
chrome() {
  cli env HOME="$CHROME_HOME" XDG_CONFIG_HOME="$CHROME_HOME/.config" XDG_CACHE_HOME="$CHROME_HOME/.cache" \
    timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$CHROME_HOME/profile" --no-first-run --no-default-browser-check \
    --disable-background-networking --disable-component-update --disable-sync --disable-extensions \
    --window-size=1280,800 --hide-scrollbars "$@" 2>>"$CHROMIUM_LOG"
}

echo "== browser: headless Chromium against bypass serve"
"$LAB" up --queues 2 >/dev/null
LOG="$ARTIFACTS/browser-serve.log"
if start_server "$LOG" --iface bpx0 --ip 10.99.0.1 --root "$SITE" --access-log "$ACCESS"; then pass "server starts"; else fail "server starts" "$(cat "$LOG")"; fi

if chrome --screenshot="$SHOT" "$URL" >>"$CHROMIUM_LOG"; then pass "chromium --screenshot exits 0"; else fail "chromium --screenshot exits 0" "$(tail -n 5 "$CHROMIUM_LOG")"; fi
dom=$(chrome --dump-dom "$URL")
check "chromium --dump-dom: the DOM has <h1>bypass</h1>" grep -q "<h1>bypass</h1>" <<<"$dom"
check "  ... and the stylesheet link" grep -q '<link rel="stylesheet" href="/style.css">' <<<"$dom"

out=$(python3 - "$SHOT" <<'PY' 2>&1
import collections, struct, sys, zlib

data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype, _, _, interlace = ihdr
assert (w, h) == (1280, 800), f"{w}x{h}, not 1280x800"
assert depth == 8 and ctype in (2, 6) and interlace == 0, f"unexpected PNG format {ihdr}"

# Undo the PNG row filters (None, Sub, Up, Average, Paeth) to get pixels.
bpp = 3 if ctype == 2 else 4
raw, stride, prev, rows, i = zlib.decompress(idat), w * bpp, bytearray(w * bpp), [], 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1:
            line[x] = (line[x] + a) & 255
        elif f == 2:
            line[x] = (line[x] + b) & 255
        elif f == 3:
            line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line))
    prev = line

def px(x, y):
    return rows[y][x * bpp:x * bpp + 3].hex()

colours = collections.Counter(px(x, y) for y in range(h) for x in range(w))
assert len(set(rows)) > 10 and len(colours) > 16, f"blank: {len(set(rows))} distinct rows, {len(colours)} colours"
# style.css: the body's background #f7f8fa fills most of the page and the
# sections are white cards; unstyled, the page would be white with black text.
top = colours.most_common(1)[0][0]
assert top == "f7f8fa", f"most common colour #{top}, not the stylesheet's background #f7f8fa"
assert colours["ffffff"] > w * h // 20, "no white section cards"
# The logo (bypass.png: #0b63c5 and #4a5563 on #f7f8fa), centred at the top.
logo_blue = sum(px(x, y) == "0b63c5" for y in range(0, 200) for x in range(w // 2 - 100, w // 2 + 100))
assert logo_blue > 1000, f"only {logo_blue} logo-blue pixels at the top centre: image missing?"
print(f"{w}x{h}, {len(colours)} colours, {len(set(rows))} distinct rows, background #{top}, {logo_blue} logo pixels")
PY
)
if [ $? = 0 ]; then pass "screenshot: $out"; else fail "screenshot is the rendered page" "$out"; fi

stop_server
check "SIGTERM: exit code 0" test "$SERVER_RC" = 0
check "SIGTERM: XDP detached" no_xdp
# The access log is flushed on exit. Chromium (10.99.0.2) fetched the page
# and, for the screenshot, what it links to.
for p in / /style.css /bypass.png; do
  check "access log: GET $p 200" grep -Eq "^10\.99\.0\.2 - - \[[^]]*\] \"GET $p HTTP/1\.1\" 200 [0-9]+$" "$ACCESS"
done
check "screenshot saved as $SHOT" test -s "$SHOT"

rm -rf "$CHROME_HOME"
finish browser
