"""Every dashboard page, with ids that exist in the tiny demo (seed 0): the browser and PostgreSQL tests
open each of them."""

PAGES = {
    "overview": "/",
    "content": "/content",
    "item": "/content/i00115",
    "item-paid": "/content/i00001",
    "users": "/users",
    "segment": "/segments/payers",
    "user": "/users/u000013",
    "recommend": "/recommend?user=u000013",
    "live-index": "/live",
    "live": "/live/i00115",
    "experiments": "/experiments",
    "experiment": "/experiments/checkout_v2",
    "funnel": "/analytics/funnel?step=impression&step=view&step=click&step=purchase&mode=ordered&window=7",
    "retention": "/analytics/retention",
    "attribution": "/analytics/attribution",
    "revenue": "/analytics/revenue",
    "creators": "/creators",
    "creator": "/creators/c0001",
    "data": "/data",
    "keys": "/data/keys",
}
