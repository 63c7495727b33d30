"""The dashboards: static HTML, CSS and ES modules, served by `api.routes.pages`.

    board.html     a line's wall board (kiosk TV), live over the WebSocket
    explorer.html  downtime history for maintenance: filters, Pareto, MTBF/MTTR, timeline
    phone.html     the supervisor's phone: active alerts (acknowledge) and each line

No build step: the files here are what the browser gets. The one third-party library,
Chart.js, is vendored under vendor/ with its licence (deploy/vendor-assets.sh).
"""

from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent
