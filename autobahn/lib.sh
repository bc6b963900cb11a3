# Shared by the Autobahn runners: a free loopback port, and waiting (bounded) for a
# process to listen on it.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_listening PORT PID LOG: returns once PORT accepts connections; fails, showing LOG,
# if PID exits first or 10 s pass.
wait_listening() {
  local port=$1 pid=$2 log=$3
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),timeout=0.2)" 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || { echo "autobahn: the process listening on $port exited early:"; tail -20 "$log"; return 1; }
    python3 -c 'import time; time.sleep(0.1)'
  done
  echo "autobahn: nothing listens on $port after 10 s"; return 1
}
