# shellcheck shell=bash
# Throwaway certificates for the Redis TLS tests (never for production): a CA, a server certificate for the name
# `localhost` only (no IP address, so connecting by 127.0.0.1 must fail host-name verification), a client
# certificate, and a second, unrelated CA. Sourced after common.sh.

# make_test_pki DIR — writes ca.pem, other-ca.pem, server.pem/key, client.pem/key into DIR.
make_test_pki() {
    local dir="$1"
    mkdir -p "$dir"
    (
        cd "$dir"
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca.key" -out "$ca.pem" -days 2 -subj "/CN=session-service test $ca" 2>/dev/null
        done
        printf 'subjectAltName=DNS:localhost\n' >server.ext
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        for leaf in server client; do
            openssl req -newkey rsa:2048 -nodes -keyout "$leaf.key" -out "$leaf.csr" -subj "/CN=$( [ "$leaf" = server ] && echo localhost || echo session-service)" 2>/dev/null
            openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$leaf.pem" -days 2 -extfile "$leaf.ext" 2>/dev/null
        done
        chmod 600 ./*.key
    ) || die "openssl could not make the test certificates"
}

# start_tls_redis NAME PORT PKI_DIR [extra args…] — a redis-server that speaks only TLS on PORT and requires a client
# certificate signed by the test CA.
start_tls_redis() {
    local name="$1" port="$2" pki="$3"; shift 3
    local dir="$STATE_DIR/$name"
    mkdir -p "$dir"
    redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --tls-cert-file "$pki/server.pem" --tls-key-file "$pki/server.key" \
        --tls-ca-cert-file "$pki/ca.pem" --tls-auth-clients yes --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" --save "" "$@" >/dev/null
    for _ in $(seq 1 100); do
        redis-cli --tls --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" -h localhost -p "$port" ping 2>/dev/null |
            grep -q PONG && return 0
        sleep 0.05
    done
    die "TLS redis-server $name did not start on port $port (see $dir/redis.log)"
}
