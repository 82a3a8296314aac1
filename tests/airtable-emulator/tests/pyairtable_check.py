"""Drives the emulator with the real pyairtable client: argv = URL TOKEN BASE."""
import sys

import requests
from pyairtable import Api

url, token, base_id = sys.argv[1], sys.argv[2], sys.argv[3]
# No retries: a 429 must surface as the client's error instead of being retried away.
api = Api(token, endpoint_url=url, retry_strategy=None, timeout=(5, 30))
users = api.table(base_id, "Users")

created = users.batch_create([{"Name": f"py{i:02}", "pg_id": f"pg:{i}", "Age": i} for i in range(25)])
assert len(created) == 25, created
assert all(r["id"].startswith("rec") and len(r["id"]) == 17 for r in created)

result = users.batch_upsert(
    [{"fields": {"pg_id": "pg:3", "Name": "three"}}, {"fields": {"pg_id": "pg:99", "Name": "new"}}],
    key_fields=["pg_id"],
)
assert len(result["createdRecords"]) == 1 and len(result["updatedRecords"]) == 1, result
assert users.get(created[3]["id"])["fields"]["Name"] == "three"

more = users.batch_create([{"Name": f"bulk{i:03}"} for i in range(224)])
everything = users.all(page_size=100)
assert len(everything) == 250, len(everything)
pages = list(users.iterate(page_size=100))
assert [len(p) for p in pages] == [100, 100, 50], [len(p) for p in pages]

found = users.all(formula="{pg_id}='pg:7'")
assert [r["fields"]["Name"] for r in found] == ["py07"], found

deleted = users.batch_delete([created[0]["id"], created[1]["id"]])
assert all(d["deleted"] for d in deleted)
assert users.delete(created[2]["id"])["deleted"] is True
assert len(users.all(fields=["Name"])) == 247

# Exhaust the base's budget: the 429 must reach the caller as an HTTP error.
try:
    for _ in range(200):
        users.first()
except requests.exceptions.HTTPError as e:
    assert e.response.status_code == 429, e
    assert e.response.json()["errors"][0]["error"] == "RATE_LIMIT_REACHED"
else:
    raise AssertionError("no 429 surfaced")
print("ALL OK")
