#!/usr/bin/env bash
# Runs Nephrocare's benchmarks on this machine and prints their results (record them in
# bench/README.md). Each benchmark gets a scratch database, dropped afterwards.
#
#   bench/run.sh copy          raw COPY vs the ingest path's batched inserts
#   bench/run.sh broker        device -> app fan-out: edge vs bare rumqttd, 1k and 10k msg/s
#   bench/run.sh ingest        end-to-end durable ingest: MQTT QoS 1 publish -> committed row (vs raw COPY), at MQTT 3.1.1 and 5
#   bench/run.sh profile       perf profile of serve at saturation (user, kernel, allocator)
#   bench/run.sh connections   10,000 MQTT clients, each its own identity: time to connect, a reconnect storm, server RSS and descriptors, at MQTT 3.1.1 and 5
#   bench/run.sh queries       trends and history on a year of one patient's 1 Hz data
#   bench/run.sh turnover      300 machines start and end treatments together; a 10 Hz probe machine's PUBACK,
#                              the server's CPU per reading (TURNOVER_MINUTES=40: the issue-20 realistic run)
#   bench/run.sh chat          100 rooms, 200 participants (MQTT + WebSocket), 500 msg/s: sent -> delivered
#   bench/run.sh alarms        a labelled corpus of 200 treatments replayed: sensitivity, false alarms,
#                              alarms per treatment hour vs naive thresholds, raise latency
#   bench/run.sh fhir          FHIR Observation pages and a whole-patient bulk export on a year of 1 Hz data
#   bench/run.sh hl7           a device gateway (IHE PCD-01: HL7 v2 ORU^R01 over MLLP) of 100 machines, 1 msg/s each
#                              with 15 OBX, then saturated over several connections: ACK latency, msg/s, OBX/s,
#                              the server's CPU per OBX
#   bench/run.sh cluster       ingest, connections and chat with the embedded core, then with a 3-server NATS
#                              cluster as the core (scripts/nats-cluster.sh): the same figures side by side
#   bench/run.sh all
#
# Sizes can be changed with environment variables (see each section).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/provision-db.sh >/dev/null
# BENCH_BIN runs a binary built before (e.g. to compare two versions) instead of building.
if [ -n "${BENCH_BIN:-}" ]; then
    BIN="$BENCH_BIN"
else
    cargo build --release --locked --bin nephrocare 2>&1 | tail -1
    BIN="${CARGO_TARGET_DIR:-target}/release/nephrocare"
fi
ADMIN_URL="${NEPHROCARE_TEST_DATABASE_URL:-postgres://nephrocare:nephrocare@127.0.0.1:5432/nephrocare}"
export NEPHROCARE_LOG="${NEPHROCARE_LOG:-warn,rumqttd=off}"

scratch() {  # creates a migrated scratch database, prints its URL
    local name="${BENCH_DB_PREFIX:-nc_bench}_$(date +%s)_$RANDOM"
    PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare -c "CREATE DATABASE $name" >/dev/null
    local url="${ADMIN_URL%/*}/$name"
    DATABASE_URL="$url" "$BIN" migrate up >/dev/null
    echo "$url"
}
drop_db() {  # retried: a TimescaleDB background worker may hold the database a moment
    local i
    for i in 1 2 3; do
        PGPASSWORD=nephrocare psql -X -q -h 127.0.0.1 -U nephrocare -d nephrocare \
            -c "DROP DATABASE IF EXISTS ${1##*/} WITH (FORCE)" >/dev/null 2>&1 && return
        sleep 1
    done
    echo "could not drop ${1##*/}" >&2
}
calc() { python3 -c "print($1)"; }

run_copy() {
    local url; url="$(scratch)"
    DATABASE_URL="$url" "$BIN" bench copy --rows "${COPY_ROWS:-1000000}" --connections "${COPY_CONNECTIONS:-3}"
    drop_db "$url"
}

run_broker() {
    local url
    for rate in ${BROKER_RATES:-1000 10000}; do
        url="$(scratch)"
        DATABASE_URL="$url" "$BIN" bench broker --devices "${BROKER_DEVICES:-300}" --rate "$rate" --seconds "${BROKER_SECONDS:-20}"
        drop_db "$url"
    done
}

# Starts `serve` on a scratch database (or on $1); sets SERVE_PID, SERVE_URL, MQTT_ADDR,
# HTTP_ADDR. BENCH_PORTS="http mqtt mqtt-ws" changes the ports.
start_serve() {
    SERVE_URL="${1:-$(scratch)}"
    local http mqtt ws
    read -r http mqtt ws <<<"${BENCH_PORTS:-18080 11883 18083}"
    HTTP_ADDR=127.0.0.1:$http MQTT_ADDR=127.0.0.1:$mqtt
    DATABASE_URL="$SERVE_URL" NEPHROCARE_JWT_SECRET=bench-secret-bench-secret-bench-secret-01 \
        "$BIN" serve --http-addr "$HTTP_ADDR" --mqtt-addr "$MQTT_ADDR" --mqtt-ws-addr 127.0.0.1:$ws &
    SERVE_PID=$!
    for _ in $(seq 1 100); do curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && return; sleep 0.2; done
    echo "serve did not become ready" >&2; exit 1
}
stop_serve() { kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; drop_db "$SERVE_URL"; }

# The raw COPY rate, then each INGEST_RUNS entry against `serve` with the lean fleet of
# `bench ingest` (a few tasks writing pre-encoded packets), which reports its own CPU and
# the service's over the same window.
run_ingest() {
    if [ "${INGEST_COPY:-1}" != 0 ]; then
        local url; url="$(scratch)"
        DATABASE_URL="$url" "$BIN" bench copy --rows "${COPY_ROWS:-1000000}" --connections "${COPY_CONNECTIONS:-3}"
        drop_db "$url"
    fi
    # Each run at both protocol levels (INGEST_LEVELS), side by side.
    for spec in ${INGEST_RUNS:-1000:10 1000:60}; do
    for level in ${INGEST_LEVELS:-3.1.1 5}; do
        local devices="${spec%%:*}" rate="${spec##*:}" rss=0 r v5=()
        [ "$level" = 5 ] && v5=(--mqtt5)
        start_serve
        DATABASE_URL="$SERVE_URL" "$BIN" seed --demo >/dev/null
        DATABASE_URL="$SERVE_URL" "$BIN" bench ingest --mqtt "$MQTT_ADDR" --devices "$devices" --rate "$rate" \
            --seconds "${INGEST_SECONDS:-30}" --server-pid "$SERVE_PID" "${v5[@]}" > /tmp/nc-bench-ingest.out &
        local gen=$! busy0 busy1
        busy0=$(cpu_ticks)
        while kill -0 "$gen" 2>/dev/null; do
            r=$(ps -o rss= -p "$SERVE_PID" | tr -d ' '); [ "${r:-0}" -gt "$rss" ] && rss=$r
            sleep 1
        done
        busy1=$(cpu_ticks)
        wait "$gen" || { cat /tmp/nc-bench-ingest.out; stop_serve; return 1; }
        local stored
        stored=$(PGPASSWORD=nephrocare psql -X -At -h 127.0.0.1 -U nephrocare -d "${SERVE_URL##*/}" -c "SELECT count(*) FROM health_metrics")
        cat /tmp/nc-bench-ingest.out
        printf '  rows stored %s; server peak RSS %.0f MiB\n' "$stored" "$(calc "$rss / 1024")"
        commit_summary
        machine_summary "$busy0" "$busy1" "$stored"
        stop_serve
    done
    done
}

# Busy and total CPU ticks of the whole machine (/proc/stat: user nice system idle iowait
# irq softirq steal).
cpu_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# How busy the whole machine was while the generator ran (the service, PostgreSQL, the
# generator and anything else): the server and generator shares are in the line above.
machine_summary() {
    local b0 t0 b1 t1
    read -r b0 t0 <<<"$1"; read -r b1 t1 <<<"$2"
    printf '  whole machine busy %.0f%% of %d cores while the generator ran: %.0f µs of CPU per stored reading\n' \
        "$(calc "100 * ($b1 - $b0) / ($t1 - $t0)")" "$(nproc)" \
        "$(calc "1e6 * ($b1 - $b0) / $(getconf CLK_TCK) / max(1, $3)")"
}

# The writers' batches over the run, from the service's own metrics: how many, their mean
# size and the mean time from sending a batch to its commit (what a PUBACK waits for, less
# the wait for the writer to be free).
commit_summary() {
    curl -fsS "http://$HTTP_ADDR/metrics" | awk '
        /^nephrocare_ingest_commit_seconds_sum/ { s = $2 } /^nephrocare_ingest_commit_seconds_count/ { n = $2 }
        /^nephrocare_ingest_batch_readings_sum/ { r = $2 }
        END { if (n > 0) printf "  batches %d, mean %.1f readings, mean commit %.2f ms\n", n, r / n, 1000 * s / n }'
}

# A CPU profile of `serve` at saturation (PROFILE_RUN="devices:hz", default 1000:60):
# perf samples the service for PROFILE_SECONDS (default 15) in the middle of the run, then
# prints the share of user code, kernel and allocator, and the hottest symbols.
run_profile() {
    command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
    local spec="${PROFILE_RUN:-1000:60}"
    local devices="${spec%%:*}" rate="${spec##*:}" secs="${PROFILE_SECONDS:-15}"
    start_serve
    DATABASE_URL="$SERVE_URL" "$BIN" seed --demo >/dev/null
    DATABASE_URL="$SERVE_URL" "$BIN" bench ingest --mqtt "$MQTT_ADDR" --devices "$devices" --rate "$rate" \
        --seconds $((secs + 20)) --server-pid "$SERVE_PID" > /tmp/nc-bench-ingest.out &
    local gen=$!
    sleep 12
    perf record -F 999 -g -o /tmp/nc-perf.data -p "$SERVE_PID" -- sleep "$secs" 2>/dev/null >/dev/null
    wait "$gen" || true
    cat /tmp/nc-bench-ingest.out
    stop_serve
    echo "  by object (share of samples):"
    perf report -i /tmp/nc-perf.data --no-children --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -8
    echo "  hottest symbols (self):"
    perf report -i /tmp/nc-perf.data --no-children --sort sym --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' | head -"${PROFILE_TOP:-30}"
}

# CONNECTION_MACHINES machines and CONNECTION_PEOPLE people (default 8000 + 2000), each
# its own identity, then a reconnect storm of CONNECTION_STORM machines (default 5000); the
# server's RSS and open descriptors with them connected.
run_connections() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    # At both protocol levels (CONNECTION_LEVELS), side by side.
    for level in ${CONNECTION_LEVELS:-3.1.1 5}; do
    local v5=()
    [ "$level" = 5 ] && v5=(--mqtt5)
    start_serve
    DATABASE_URL="$SERVE_URL" "$BIN" seed --demo >/dev/null
    local before fds after out=/tmp/nc-bench-conn.out
    before=$(ps -o rss= -p "$SERVE_PID" | tr -d ' ')
    DATABASE_URL="$SERVE_URL" NEPHROCARE_JWT_SECRET=bench-secret-bench-secret-bench-secret-01 \
        "$BIN" bench connections --mqtt "$MQTT_ADDR" --machines "${CONNECTION_MACHINES:-8000}" \
        --people "${CONNECTION_PEOPLE:-2000}" --storm "${CONNECTION_STORM:-5000}" "${v5[@]}" > "$out" &
    local b=$!
    while ! grep -q holding "$out" 2>/dev/null; do sleep 0.5; kill -0 $b 2>/dev/null || break; done
    sleep 2
    after=$(ps -o rss= -p "$SERVE_PID" | tr -d ' ')
    fds=$(ls /proc/"$SERVE_PID"/fd | wc -l)
    wait $b || true
    grep -v holding "$out"
    local n=$(( ${CONNECTION_MACHINES:-8000} + ${CONNECTION_PEOPLE:-2000} ))
    printf '  server RSS %.0f MiB before, %.0f MiB with the clients connected (%.1f KiB per connection); %s open descriptors (%.1f per connection)\n' \
        "$(calc "$before/1024")" "$(calc "$after/1024")" "$(calc "($after-$before)/$n")" "$fds" "$(calc "$fds/$n")"
    stop_serve
    done
}

# A shift change: TURNOVER_DEVICES (300) machines at 2 Hz, treatments compressed 60× (a 4 h
# session in 4 min, so all of them end and start again within seconds of each other), with
# 2 episodes per treatment hour, for TURNOVER_MINUTES (6; the first turnover comes at ~4
# min); meanwhile one probe machine of another hospital sends at 10 Hz and reports its
# PUBACK latency. Then, per 10-second window, the p99 of received_at - ts of the stored
# readings (how long a reading waited for its writer).
run_turnover() {
    start_serve
    DATABASE_URL="$SERVE_URL" "$BIN" seed --demo >/dev/null
    local minutes="${TURNOVER_MINUTES:-6}" cpu0
    cpu0=$(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat")
    DATABASE_URL="$SERVE_URL" "$BIN" simulate --devices "${TURNOVER_DEVICES:-300}" --rate 2 --speed 60 \
        --episodes-per-hour 2 --duration "${minutes}m" --mqtt "$MQTT_ADDR" --progress-every 0 > /tmp/nc-bench-sim.out 2>&1 &
    local sim=$!
    sleep 20  # the fleet provisioned and connected
    DATABASE_URL="$SERVE_URL" "$BIN" bench ingest --mqtt "$MQTT_ADDR" --hospital riverside --devices 1 --rate 10 \
        --seconds $((minutes * 60 - 30)) --tasks 1 --server-pid "$SERVE_PID" > /tmp/nc-bench-probe.out 2>&1 || true
    wait "$sim" || true
    tail -1 /tmp/nc-bench-sim.out
    echo "  probe (10 Hz, not taking part):"; sed 's/^/    /' /tmp/nc-bench-probe.out
    PGPASSWORD=nephrocare psql -X -At -F ' ' -h 127.0.0.1 -U nephrocare -d "${SERVE_URL##*/}" -c "
        WITH w AS (SELECT time_bucket('10 s', received_at) AS b,
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - time)) AS p99
                     FROM health_metrics GROUP BY 1)
        SELECT 'readings ' || (SELECT count(*) FROM health_metrics)
            || '; received_at - ts p99 over the run ' || round((SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - time)) FROM health_metrics)::numeric * 1000) || ' ms'
            || ', worst 10 s window ' || round(max(p99)::numeric * 1000) || ' ms'
            || '; sessions started ' || (SELECT count(*) FROM device_sessions)
            || ', ended ' || (SELECT count(*) FROM device_sessions WHERE status <> 'active')
            || '; alarms raised ' || (SELECT count(*) FROM alerts) FROM w"
    # The server's CPU per stored reading over the whole run (fleet and probe, sessions,
    # alarms, deriving and sweeps included): the realistic load's cost.
    local cpu readings
    cpu=$(calc "($(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat") - $cpu0) / $(getconf CLK_TCK)")
    readings=$(PGPASSWORD=nephrocare psql -X -At -h 127.0.0.1 -U nephrocare -d "${SERVE_URL##*/}" -c "SELECT count(*) FROM health_metrics")
    printf '  server CPU %.0f s for %s readings: %.0f µs per reading\n' "$cpu" "$readings" "$(calc "$cpu * 1e6 / max($readings, 1)")"
    stop_serve
}

run_queries() {
    if [ -n "${QUERY_DB_URL:-}" ]; then  # a database kept by QUERY_KEEP_DB=1: time again, no load
        DATABASE_URL="$QUERY_DB_URL" "$BIN" bench queries --loaded; return
    fi
    local url; url="$(scratch)"
    DATABASE_URL="$url" "$BIN" bench queries --days "${QUERY_DAYS:-365}"
    # QUERY_KEEP_DB=1 keeps the loaded database (for EXPLAIN); drop it yourself afterwards.
    if [ -n "${QUERY_KEEP_DB:-}" ]; then echo "  kept: $url"; else drop_db "$url"; fi
}

# FHIR on a year of one patient's 1 Hz data (FHIR_DAYS, default 365; six measurements a
# reading, so six Observations): Observation search pages over HTTP, each timed by curl
# FHIR_RUNS times (default 20), and a walk of 50 `next` pages; then the patient's whole
# bulk export (Observation file) streamed to a counter while the server's RSS is sampled
# every second (FHIR_EXPORT_SECS stops it early; default: the whole file).
run_fhir() {
    local url ids patient token base mid
    if [ -n "${FHIR_DB_URL:-}" ]; then  # a database kept by FHIR_KEEP_DB=1: no load
        url="$FHIR_DB_URL"
        patient=$(PGPASSWORD=nephrocare psql -X -qAt "$url" -c "SELECT id FROM patients WHERE patient_number = 'BENCH-P1'")
    else
        url="$(scratch)"
        DATABASE_URL="$url" NEPHROCARE_LOG=warn,sqlx=error "$BIN" bench queries --days "${FHIR_DAYS:-365}" --load-only | head -1
        ids=$(DATABASE_URL="$url" "$BIN" bench fhir-setup --email bench.doctor@bench.test --password Bench-doctor-2026)
        patient=$(awk '{print $2}' <<<"$ids")
    fi
    start_serve "$url"
    token=$(curl -fsS -X POST "http://$HTTP_ADDR/api/auth/login" -H 'content-type: application/json' \
        -d '{"email":"bench.doctor@bench.test","password":"Bench-doctor-2026"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
    base="http://$HTTP_ADDR/fhir/r4"
    mid=$(date -u -d "-$(( ${FHIR_DAYS:-365} / 2 )) days" +%Y-%m-%dT%H:%M:%SZ)
    echo "bench fhir: ${FHIR_DAYS:-365} days of 1 Hz readings of one patient; Observation search pages (curl time_total, ${FHIR_RUNS:-20} runs each)"
    time_page() {  # $1 name, $2 URL
        local t=()
        for _ in $(seq 1 "${FHIR_RUNS:-20}"); do
            t+=("$(curl -fsS -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" "$2")")
        done
        python3 - "$1" "${t[@]}" <<'PY'
import sys
name, t = sys.argv[1], sorted(float(x) * 1000 for x in sys.argv[2:])
pct = lambda q: t[min(len(t) - 1, int(q * len(t)))]
print(f"  {name:<62} p50 {pct(0.5):7.2f} ms  p99 {pct(0.99):7.2f} ms  max {t[-1]:7.2f} ms")
PY
    }
    time_page "first page, newest first (_count=50)" "$base/Observation?patient=$patient&_count=50"
    time_page "first page, oldest first (_sort=date, _count=50)" "$base/Observation?patient=$patient&_count=50&_sort=date"
    time_page "a page half a year back (date=lt..., _count=50)" "$base/Observation?patient=$patient&_count=50&date=lt$mid"
    time_page "heart rate only, half a year back (code=8867-4)" "$base/Observation?patient=$patient&_count=50&code=8867-4&date=lt$mid"
    time_page "a day's heart rate, oldest first (date=ge&lt, _count=1000)" \
        "$base/Observation?patient=$patient&_count=1000&code=http://loinc.org%7C8867-4&_sort=date&date=ge${mid:0:10}&date=lt${mid:0:10}T06:00:00Z"
    python3 - "$base/Observation?patient=$patient&_count=50" "$token" <<'PY'
import json, sys, time, urllib.request
url, token, times = sys.argv[1], sys.argv[2], []
for _ in range(50):
    t = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})) as r:
        b = json.load(r)
    times.append((time.perf_counter() - t) * 1000)
    url = next(l["url"] for l in b["link"] if l["relation"] == "next")
t = sorted(times)
print(f"  {'50 next pages from the newest (link.next, _count=50)':<62} p50 {t[25]:7.2f} ms  p99 {t[-1]:7.2f} ms  max {t[-1]:7.2f} ms")
PY
    # The whole-patient export.
    local status manifest file rss_log=/tmp/nc-bench-fhir-rss.$$ before
    status=$(curl -fsS -D - -o /dev/null -H "Authorization: Bearer $token" -H 'Prefer: respond-async' \
        "$base/Patient/\$export?_type=Observation" | tr -d '\r' | sed -n 's/^content-location: //Ip')
    until [ "$(curl -s -o /tmp/nc-bench-fhir-manifest.json -w '%{http_code}' -H "Authorization: Bearer $token" "$status")" = 200 ]; do sleep 0.5; done
    file=$(python3 -c 'import json; print(json.load(open("/tmp/nc-bench-fhir-manifest.json"))["output"][0]["url"])')
    before=$(ps -o rss= -p "$SERVE_PID" | tr -d ' ')
    ( while kill -0 "$SERVE_PID" 2>/dev/null; do ps -o rss= -p "$SERVE_PID" | tr -d ' '; sleep 1; done ) > "$rss_log" &
    local sampler=$!
    curl -sS -H "Authorization: Bearer $token" --max-time "${FHIR_EXPORT_SECS:-0}" "$file" | python3 -c '
import sys, time
t, n, b = time.perf_counter(), 0, 0
for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
    b += len(chunk); n += chunk.count(b"\n")
s = time.perf_counter() - t
print(f"  bulk export, the patient'"'"'s Observation file: {n:,} lines, {b / 2**20:,.0f} MiB in {s:,.0f} s ({n / s:,.0f} lines/s, {b / 2**20 / s:,.1f} MiB/s)")' || true
    kill "$sampler" 2>/dev/null || true
    python3 - "$before" "$rss_log" <<'PY'
import sys
before, samples = int(sys.argv[1]), [int(x) for x in open(sys.argv[2]) if x.strip()]
first = samples[: max(1, len(samples) // 10)]
last = samples[-max(1, len(samples) // 10):]
print(f"  server RSS: {before / 1024:.0f} MiB before; during the export min {min(samples) / 1024:.0f}, max {max(samples) / 1024:.0f} MiB; "
      f"first tenth avg {sum(first) / len(first) / 1024:.0f}, last tenth avg {sum(last) / len(last) / 1024:.0f} MiB ({len(samples)} samples)")
PY
    rm -f "$rss_log" /tmp/nc-bench-fhir-manifest.json
    # FHIR_KEEP_DB=1 keeps the loaded database; FHIR_DB_URL=<its url> times again without loading.
    if [ -n "${FHIR_KEEP_DB:-}${FHIR_DB_URL:-}" ]; then
        kill "$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; echo "  kept: $url"
    else
        stop_serve
    fi
}

run_chat() {
    local url; url="$(scratch)"
    DATABASE_URL="$url" "$BIN" bench chat --rooms "${CHAT_ROOMS:-100}" --rate "${CHAT_RATE:-500}" --seconds "${CHAT_SECONDS:-20}"
    drop_db "$url"
}

# ALARM_TREATMENTS (200), ALARM_RATE (readings per second per machine, 25), ALARM_SEED (2026);
# the corpus is written once into target/alarm-corpus-<treatments>-<seed> and reused.
# The doctor also gets every alarm by e-mail, through a real SMTP server (aiosmtpd, from
# scripts/peers.sh) that accepts everything: the outbox's e-mail figure.
run_alarms() {
    local url; url="$(scratch)"
    local n="${ALARM_TREATMENTS:-200}" seed="${ALARM_SEED:-2026}" python port smtp
    python="$(scripts/peers.sh)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$python" tests/peers/smtp_server.py --port "$port" --until-killed >/dev/null &
    smtp=$!
    NEPHROCARE_SMTP_URL="smtp://127.0.0.1:$port" DATABASE_URL="$url" "$BIN" bench alarms --treatments "$n" \
        --rate "${ALARM_RATE:-25}" --seed "$seed" --corpus "${CARGO_TARGET_DIR:-target}/alarm-corpus-$n-$seed"
    kill "$smtp" 2>/dev/null || true
    drop_db "$url"
}

# A device gateway against `serve`'s MLLP listener (NEPHROCARE_HL7_LISTEN_ADDR, port HL7_PORT,
# default 12575), each run a new hospital with its machines and gateway (`bench hl7`):
# paced, HL7_MACHINES (100) machines sending one ORU^R01 of 15 OBX a second each for
# HL7_SECONDS (30) over HL7_PACED_CONNECTIONS (1); then saturated, HL7_CONNECTIONS (8)
# connections sending back to back for HL7_SATURATION_SECONDS (20). Around each run: the
# service's CPU (/proc) per acknowledged OBX, the generator's, and the whole machine's.
run_hl7() {
    local addr="127.0.0.1:${HL7_PORT:-12575}" out=/tmp/nc-bench-hl7.out run
    export NEPHROCARE_HL7_LISTEN_ADDR="$addr"
    start_serve
    unset NEPHROCARE_HL7_LISTEN_ADDR
    for run in paced saturation; do
        local args
        if [ "$run" = paced ]; then
            args=(--rate 1 --seconds "${HL7_SECONDS:-30}" --connections "${HL7_PACED_CONNECTIONS:-1}")
        else
            args=(--rate 0 --seconds "${HL7_SATURATION_SECONDS:-20}" --connections "${HL7_CONNECTIONS:-8}")
        fi
        local busy0 busy1 cpu0 cpu1 gen rss=0 r obx msgs
        busy0=$(cpu_ticks)
        cpu0=$(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat")
        DATABASE_URL="$SERVE_URL" /usr/bin/time -f '%U %S' -o /tmp/nc-bench-hl7.time \
            "$BIN" bench hl7 --hl7 "$addr" --machines "${HL7_MACHINES:-100}" "${args[@]}" > "$out" 2>&1 &
        gen=$!
        while kill -0 "$gen" 2>/dev/null; do
            r=$(ps -o rss= -p "$SERVE_PID" | tr -d ' '); [ "${r:-0}" -gt "$rss" ] && rss=$r
            sleep 1
        done
        cpu1=$(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat")
        busy1=$(cpu_ticks)
        wait "$gen" || { cat "$out"; stop_serve; return 1; }
        cat "$out"
        # The messages and OBX acknowledged, as `bench hl7` prints them: "(AA) M messages (N OBX)".
        obx=$(grep -o '([0-9]* OBX)' "$out" | tr -dc 0-9)
        msgs=$(sed -n 's/.*acknowledged (AA) \([0-9]*\) messages.*/\1/p' "$out")
        local b0 t0 b1 t1 tick; tick=$(getconf CLK_TCK)
        read -r b0 t0 <<<"$busy0"; read -r b1 t1 <<<"$busy1"
        printf '  server CPU %.1f s (%.0f%% of a core over the command), %.1f µs per OBX, %.0f µs per message; peak RSS %.0f MiB\n' \
            "$(calc "($cpu1 - $cpu0) / $tick")" "$(calc "100 * ($cpu1 - $cpu0) / ($t1 - $t0) * $(nproc)")" \
            "$(calc "1e6 * ($cpu1 - $cpu0) / $tick / max(1, $obx)")" \
            "$(calc "1e6 * ($cpu1 - $cpu0) / $tick / max(1, $msgs)")" "$(calc "$rss / 1024")"
        printf '  generator CPU %.1f s; whole machine busy %.0f%% of %d cores over the run: %.1f µs of CPU per OBX\n' \
            "$(awk '{print $1 + $2}' /tmp/nc-bench-hl7.time)" "$(calc "100 * ($b1 - $b0) / ($t1 - $t0)")" "$(nproc)" \
            "$(calc "1e6 * ($b1 - $b0) / $tick / max(1, $obx)")"
    done
    stop_serve
}

# The ingest runs (CLUSTER_RUNS, default "1000:10 1000:40"), the connections benchmark
# (CLUSTER_MACHINES 2000, CLUSTER_PEOPLE 500, CLUSTER_STORM 1000) and chat (CLUSTER_CHAT_RATE
# 100 msg/s) against one node with the embedded core, then against one node whose core is a
# local 3-server NATS cluster (R3 JetStream: every QoS 1 message the edge forwards is stored
# three times), with the brokers' CPU seconds and RSS. CLUSTER_BENCHES chooses among
# "ingest connections chat". All on this machine's 2 cores.
run_cluster() {
    scripts/provision-nats.sh >/dev/null
    local dir=/tmp/nc-bench-nats runs="${CLUSTER_RUNS:-1000:10 1000:40}" what="${CLUSTER_BENCHES:-ingest connections chat}"
    bash scripts/nats-cluster.sh stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    cluster_round() {
        case " $what " in *" ingest "*) INGEST_COPY=0 INGEST_RUNS="$runs" run_ingest ;; esac
        case " $what " in *" connections "*)
            CONNECTION_MACHINES="${CLUSTER_MACHINES:-2000}" CONNECTION_PEOPLE="${CLUSTER_PEOPLE:-500}" \
                CONNECTION_STORM="${CLUSTER_STORM:-1000}" run_connections ;;
        esac
        case " $what " in *" chat "*) CHAT_RATE="${CLUSTER_CHAT_RATE:-100}" CHAT_SECONDS=15 run_chat ;; esac
    }
    echo "== embedded core (one node)"
    cluster_round
    local urls; urls="$(bash scripts/nats-cluster.sh start "$dir" 24883 2>/dev/null)"
    nats_cpu() {  # total CPU seconds of the three servers
        local t=0 pid
        for n in 1 2 3; do
            pid=$(cat "$dir/nc$n.pid")
            t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
        done
        calc "$t / $(getconf CLK_TCK)"
    }
    local before; before=$(nats_cpu)
    echo "== NATS cluster core (3 servers, R3)"
    export NEPHROCARE_MQTT_CORE_URL="$urls"
    cluster_round
    unset NEPHROCARE_MQTT_CORE_URL
    local rss=0 r
    for n in 1 2 3; do r=$(ps -o rss= -p "$(cat "$dir/nc$n.pid")" | tr -d ' '); rss=$((rss + r)); done
    printf '  the 3 NATS servers: %.1f CPU s over the clustered runs, RSS %.0f MiB in all now\n' \
        "$(calc "$(nats_cpu) - $before")" "$(calc "$rss / 1024")"
    bash scripts/nats-cluster.sh stop "$dir" >/dev/null 2>&1
}

# Readings across a database failover: a pg_auto_failover cluster (scripts/pg-ha.sh: a
# monitor, a primary and a synchronous standby) and `serve` on its multi-host URL. First the
# price of durability: PUBACK latency at FAILOVER_DEVICES machines x FAILOVER_RATE Hz
# (`bench ingest`) with the standby synchronous, then asynchronous (replication-quorum
# false); then the primary's server lost (kill -9) during HTTP ingest (bench/failover.py, one
# sender per demo machine, each reading sent again until acknowledged): readings
# acknowledged vs stored (must be equal) and seconds from the kill to the first new 201.
run_failover() {
    local dir=/tmp/nc-bench-pgha base="${FAILOVER_BASE:-5560}" url u mode
    bash scripts/pg-ha.sh destroy "$dir" >/dev/null 2>&1 || true
    url="$(bash scripts/pg-ha.sh start "$dir" "$base")"
    on_primary() {  # psql on whichever node is the primary now: database, SQL
        local q
        for q in $((base + 1)) $((base + 2)); do
            if [ "$(PGPASSWORD=nephrocare psql -X -At -h 127.0.0.1 -p "$q" -U nephrocare -d nephrocare \
                -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
                PGPASSWORD=nephrocare psql -X -q -At -h 127.0.0.1 -p "$q" -U nephrocare -d "$1" -c "$2"
                return
            fi
        done
        echo "no primary" >&2; return 1
    }
    failover_db() {  # a fresh migrated database on the cluster; prints its multi-host URL
        local n="nc_bench_fo_$(date +%s)_$RANDOM"
        on_primary nephrocare "CREATE DATABASE $n" >/dev/null
        DATABASE_URL="${url/\/nephrocare\?/\/$n?}" "$BIN" migrate up >/dev/null
        echo "${url/\/nephrocare\?/\/$n?}"
    }
    quorum() {  # the standby synchronous (true) or not (false), and wait until it is so
        local node standby want
        for node in node1 node2; do
            [ "$(PGPASSWORD=nephrocare psql -X -At -h 127.0.0.1 -p $([ $node = node1 ] && echo $((base + 1)) || echo $((base + 2))) \
                -U nephrocare -d nephrocare -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ] && standby=$node
        done
        (cd / && runuser -u postgres -- pg_autoctl set node replication-quorum "$1" --pgdata "$dir/$standby") >/dev/null 2>&1
        want=$([ "$1" = true ] && echo "sync quorum" || echo async)
        for _ in $(seq 1 60); do
            case " $want " in *" $(on_primary nephrocare 'SELECT sync_state FROM pg_stat_replication LIMIT 1') "*) return ;; esac
            sleep 0.5
        done
        echo "the standby did not become $want" >&2; return 1
    }
    for mode in synchronous asynchronous; do
        [ "$mode" = asynchronous ] && quorum false
        u="$(failover_db)"
        start_serve "$u"
        DATABASE_URL="$u" "$BIN" seed --demo >/dev/null
        echo "== standby $mode ($(on_primary nephrocare 'SELECT sync_state FROM pg_stat_replication LIMIT 1'))"
        DATABASE_URL="$u" "$BIN" bench ingest --mqtt "$MQTT_ADDR" --devices "${FAILOVER_DEVICES:-1000}" \
            --rate "${FAILOVER_RATE:-10}" --seconds "${FAILOVER_SECONDS:-30}" --server-pid "$SERVE_PID"
        commit_summary
        kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null || true
    done
    quorum true
    u="$(failover_db)"
    start_serve "$u"
    DATABASE_URL="$u" "$BIN" seed --demo >/dev/null
    local devices db="${u##*/}"
    db="${db%%\?*}"
    devices="$(on_primary "$db" "SELECT string_agg(id || ':demo-device-secret-' || serial, ',') FROM devices WHERE serial LIKE 'DM-%'")"
    echo "== the primary's server lost during HTTP ingest ($(echo "$devices" | tr ',' '\n' | wc -l) senders)"
    local out stored
    out="$(python3 bench/failover.py --url "http://$HTTP_ADDR" --devices "$devices" --seconds "${FAILOVER_KILL_SECONDS:-30}" \
        --kill-at 10 --kill-cmd "bash scripts/pg-ha.sh kill-primary $dir")"
    stored="$(on_primary "$db" "SELECT count(*) FROM health_metrics WHERE seq >= 10000000")"
    echo "  $out"
    local acked
    acked="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["acknowledged"])')"
    echo "  stored on the new primary: $stored (acknowledged: $acked)"
    [ "$stored" = "$acked" ] || { echo "  FAIL: acknowledged and stored differ" >&2; return 1; }
    kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null || true
    bash scripts/pg-ha.sh destroy "$dir" >/dev/null 2>&1
}

case "${1:-all}" in
    copy) run_copy ;;
    chat) run_chat ;;
    alarms) run_alarms ;;
    fhir) run_fhir ;;
    broker) run_broker ;;
    ingest) run_ingest ;;
    connections) run_connections ;;
    profile) run_profile ;;
    queries) run_queries ;;
    turnover) run_turnover ;;
    hl7) run_hl7 ;;
    cluster) run_cluster ;;
    failover) run_failover ;;
    all) run_copy; run_broker; run_ingest; run_connections; run_queries; run_chat; run_alarms; run_fhir; run_hl7 ;;
    *) echo "usage: bench/run.sh [copy|broker|ingest|profile|connections|queries|turnover|chat|alarms|fhir|hl7|cluster|failover|all]" >&2; exit 2 ;;
esac
