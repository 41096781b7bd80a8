#!/bin/sh
# certbot deploy hook: runs after each successful renewal, so cycast re-reads its certificate
# (SIGHUP: new handshakes get the new pair, connected listeners stay).
# Install: install -m 755 deploy/certbot/cycast-reload.sh /etc/letsencrypt/renewal-hooks/deploy/
set -e
systemctl reload cycast
