# A self-signed ECDSA P-256 certificate for `localhost`, made at run time with the openssl CLI
# (sourced, not run). Shared by the measuring scripts that speak HTTPS.
#
# make_localhost_cert DIR: writes DIR/cert.pem, DIR/key.pem and DIR/cert-key.pem (both in one
# file, as Icecast's <ssl-certificate> wants them). Clients check it with --ca-file DIR/cert.pem.
make_localhost_cert() {
    local dir="$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -subj /CN=localhost \
        -addext subjectAltName=DNS:localhost -addext basicConstraints=critical,CA:FALSE 2>/dev/null
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/cert-key.pem"
    # Servers that drop root after start (Icecast, nginx's workers) still read them; loopback
    # test keys only.
    chmod 644 "$dir/cert.pem" "$dir/key.pem" "$dir/cert-key.pem"
}
