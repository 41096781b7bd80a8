buffer { size_mb = 4294967295 }
limits { max_listeners = 0 }
advanced { max_listeners = 10 
 source_timeout = 1e308 }
