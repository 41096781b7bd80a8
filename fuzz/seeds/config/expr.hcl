server {
  listen_port = 8001
  source_password = "${x}"
}
limits {
  queue_size = 512 * 1024
  header_timeout = 1.5
}
