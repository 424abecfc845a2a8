"""``hrjax serve``: a local web page for boosting images (stdlib HTTP server, one static page, no framework).

config.py (ServeConfig, JobOptions), jobs.py (upload checks, queue, the worker that calls the run layer),
http.py (routes), page.html (the page), cli.py (the command). See README "Web page".
"""
