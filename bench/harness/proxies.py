"""The proxies under test, their command lines and config files."""

from pathlib import Path

from .processes import (PROCS, free_port, group_pids, render, status_kib,
                        wait_http)


class Proxy:
    """One proxy under test in front of a set of backend ports. "direct"
    has no process: its URL is the first backend's."""

    def __init__(self, ctx, name, backend_ports, suffix="", tls=False,
                 args=(), retry_503=False):
        self.ctx = ctx
        # Terminates TLS with the run's certificate (figure 6).
        self.tls = tls
        # sidekick: more flags (figure 7's balancing variants). nginx and
        # HAProxy: also send a request that got a 503 to another server.
        self.args, self.retry_503 = list(args), retry_503
        self.name = name
        self.instance = name + suffix
        self.backend_ports = backend_ports
        self.port = backend_ports[0] if name == "direct" else free_port()
        self.log_path = ctx.dir / f"{self.instance}.log"
        self.proc = None

    def url(self, path):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def command(self):
        d, name = self.ctx.dir, self.instance
        if self.name.startswith("sidekick"):
            site = ",".join(f"http://127.0.0.1:{p}"
                            for p in self.backend_ports)
            argv = [str(self.ctx.sidekick),
                    "--address", f"127.0.0.1:{self.port}",
                    "--health-path", "/health/ready",
                    "--health-duration", "1s", "--quiet"]
            if self.name == "sidekick":
                argv += ["--workers", "1"]
            if self.tls:
                argv += ["--cert", str(d / "cert.pem"), "--key", str(d / "key.pem")]
            return argv + self.args + [site]
        if self.name == "nginx":
            servers = "\n".join(f"        server 127.0.0.1:{p};"
                                for p in self.backend_ports)
            conf = d / f"{name}.conf"
            next_upstream = "proxy_next_upstream error timeout http_503;" \
                if self.retry_503 else ""
            conf.write_text(render(
                "nginx-proxy.conf.tmpl", user=self.ctx.nginx_user, dir=d,
                name=name, port=self.port, servers=servers,
                next_upstream=next_upstream))
            return ["nginx", "-c", str(conf), "-p", str(d), "-e", "stderr"]
        if self.name == "haproxy":
            servers = "\n".join(f"    server b{i} 127.0.0.1:{p}"
                                for i, p in enumerate(self.backend_ports))
            conf = d / f"{name}.cfg"
            bind = f"127.0.0.1:{self.port}"
            if self.tls:
                bind += f" ssl crt {d / 'combined.pem'} alpn http/1.1"
            retry_on = "retry-on conn-failure empty-response 503" \
                if self.retry_503 else ""
            conf.write_text(render("haproxy.cfg.tmpl", dir=d, name=name,
                                   bind=bind, servers=servers,
                                   retry_on=retry_on))
            return ["haproxy", "-db", "-f", str(conf)]
        raise ValueError(self.name)

    def start(self):
        if self.name == "direct":
            return
        # sidekick's default worker count is the number of CPUs it may run
        # on, so pinning sidekick-default to one CPU would make it the same
        # as --workers 1: it runs unpinned, sharing CPU 0 with the load.
        cpu = None if self.name == "sidekick-default" else self.ctx.proxy_cpu
        self.proc = PROCS.start(self.command(), self.log_path, cpu=cpu)
        # sidekick has its own health endpoint; the others are ready once a
        # backend's health check answers through them.
        path = "/v1/health" if self.name.startswith("sidekick") \
            else "/health/ready"
        wait_http(self.port, path, self.proc, tls=self.tls)

    def stop(self):
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    def alive(self):
        return self.name == "direct" or (self.proc is not None
                                         and self.proc.poll() is None)

    def restart(self):
        self.stop()
        self.start()

    def pids(self):
        return group_pids(self.proc.pid) if self.proc else []

    def rss_mib(self, field="VmRSS"):
        return status_kib(self.pids(), field) / 1024

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM to the current RSS, so the
        # next reading is the peak since now (Linux >= 4.0).
        for pid in self.pids():
            Path(f"/proc/{pid}/clear_refs").write_text("5")

