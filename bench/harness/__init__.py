"""The benchmark harness behind bench/run.py (see its docstring).

Modules, each importing only those above it:

    settings   paths, proxy and figure names, sizes, durations
    processes  started processes, cleanup, /proc readings, ports, HTTP waits
    setup      tools, the sidekick build, test objects, CPUs, fd limit
    backends   nginx backends and the PUT sink
    proxies    the proxies under test
    clients    wrk, curl, idle connections
    tail       figure 7: one sick backend of four under paced load
               (runs sick_backends.py and paced_client.py, standalone
               scripts)
    figures    the measurements, FIGURE_FUNCTIONS
    report     the Markdown report
"""
