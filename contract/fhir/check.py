"""Validates the FHIR R4 API of a live server with the demo data (run by scripts/check-fhir.sh).

Every resource the API returns — each resource type read and searched as each demo role
would, and every line of Bulk Data exports (Patient/$export and Group/{hospital}/$export) —
is validated with fhir.resources against its R4B model (the package ships R5 and R4B; R4B
equals R4 for these resources), plus what those models do not check: the vital-signs
profile's required elements (category vital-signs, a LOINC code, a UCUM quantity or the
blood pressure components, an effective time, a subject), the required code bindings we
emit, and that errors are OperationOutcomes. Exits non-zero on the first problem.

Environment: NC_URL.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from fhir.resources.R4B import get_fhir_model_class

URL = os.environ["NC_URL"].rstrip("/")
FHIR = URL + "/fhir/r4"
PASSWORD = "Nephro-demo-2026"
VITALS = {"8867-4", "8310-5", "85354-9", "2708-6"}
UCUM = "http://unitsofmeasure.org"
BINDINGS = {
    ("Observation", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"},
    ("Procedure", "status"): {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "entered-in-error", "unknown"},
    ("DetectedIssue", "status"): {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"},
    ("DetectedIssue", "severity"): {"high", "moderate", "low"},
    ("Device", "status"): {"active", "inactive", "entered-in-error", "unknown"},
    ("Patient", "gender"): {"male", "female", "other", "unknown"},
    ("Bundle", "type"): {"searchset"},
}

counts: dict[str, int] = {}


def fail(message: str) -> None:
    sys.exit(f"fhir: {message}")


def request(method: str, url: str, token: str | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def login(email: str) -> str:
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    req = urllib.request.Request(URL + "/api/auth/login", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)["accessToken"]


def validate(resource: dict, where: str) -> None:
    """One resource against its R4B model, and our checks."""
    kind = resource.get("resourceType")
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except Exception as e:  # noqa: BLE001 - any validation error is a failure
        fail(f"{where}: {kind} is not valid R4(B): {e}\n{json.dumps(resource)[:2000]}")
    for (k, field), allowed in BINDINGS.items():
        if kind == k and field in resource and resource[field] not in allowed:
            fail(f"{where}: {kind}.{field} = {resource[field]!r} is not in its required binding")
    if kind == "Observation":
        vital_signs(resource, where)
    if kind == "Bundle":
        for e in resource.get("entry", []):
            validate(e["resource"], where)
            if not e.get("fullUrl", "").endswith(f"/{e['resource']['resourceType']}/{e['resource']['id']}"):
                fail(f"{where}: fullUrl {e.get('fullUrl')} does not name its resource")
    counts[kind] = counts.get(kind, 0) + 1


def vital_signs(o: dict, where: str) -> None:
    """The FHIR vital-signs profile's required elements, for every vital sign."""
    cats = [c["code"] for cc in o.get("category", []) for c in cc.get("coding", [])]
    loinc = [c["code"] for c in o["code"].get("coding", []) if c.get("system") == "http://loinc.org"]
    is_vital = "vital-signs" in cats or any(c in VITALS for c in loinc)
    if not is_vital:
        if not all(q.get("system") == UCUM for q in [o.get("valueQuantity")] if q):
            fail(f"{where}: {o['id']} has a quantity without UCUM")
        return
    problems = []
    if "vital-signs" not in cats:
        problems.append("category vital-signs")
    if not any(c in VITALS for c in loinc):
        problems.append("a vital-signs LOINC code")
    if not (o.get("effectiveDateTime") or o.get("effectivePeriod")):
        problems.append("effective[x]")
    if not o.get("subject", {}).get("reference", "").startswith("Patient/"):
        problems.append("subject Patient")
    if "85354-9" in loinc:
        comps = {c["code"]["coding"][0]["code"]: c for c in o.get("component", [])}
        for code in ("8480-6", "8462-4"):
            c = comps.get(code)
            q = c and c.get("valueQuantity")
            if not c or not (q and q.get("system") == UCUM and q.get("code") == "mm[Hg]" or c.get("dataAbsentReason")):
                problems.append(f"component {code} in mm[Hg] or with a dataAbsentReason")
    else:
        q = o.get("valueQuantity")
        units = {"8867-4": "/min", "8310-5": "Cel", "2708-6": "%"}
        want = next(units[c] for c in loinc if c in units)
        if not q or q.get("system") != UCUM or q.get("code") != want or not isinstance(q.get("value"), (int, float)):
            problems.append(f"valueQuantity in UCUM {want}")
    if problems:
        fail(f"{where}: Observation {o['id']} lacks: {', '.join(problems)}\n{json.dumps(o)}")


def get(path: str, token: str | None, want: int = 200, where: str | None = None) -> dict:
    status, headers, body = request("GET", path if path.startswith("http") else FHIR + path, token)
    where = where or path
    if status != want:
        fail(f"GET {where}: {status} instead of {want}: {body[:500]!r}")
    if not headers.get("Content-Type", headers.get("content-type", "")).startswith("application/fhir+json"):
        fail(f"GET {where}: content type {headers.get('Content-Type')}")
    doc = json.loads(body)
    validate(doc, where)
    if want >= 400 and doc.get("resourceType") != "OperationOutcome":
        fail(f"GET {where}: an error that is not an OperationOutcome")
    return doc


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def walk(path: str, token: str, pages: int) -> list[dict]:
    """A search and up to `pages` - 1 of its next pages."""
    out, url = [], FHIR + path
    for _ in range(pages):
        b = get(url, token, where=path)
        out.extend(e["resource"] for e in b.get("entry", []))
        nxt = [link["url"] for link in b["link"] if link["relation"] == "next"]
        if not nxt:
            break
        url = nxt[0]
    return out


def export(token: str, kick_off: str) -> int:
    """A Bulk Data export: kick-off, polling, every line of every file validated."""
    status, headers, body = request("GET", FHIR + kick_off, token, {"Prefer": "respond-async", "Accept": "application/fhir+json"})
    if status != 202:
        fail(f"{kick_off}: {status} {body[:300]!r}")
    poll = headers.get("Content-Location") or headers.get("content-location")
    for _ in range(120):
        status, headers, body = request("GET", poll, token)
        if status == 200:
            break
        if status != 202 or not (headers.get("Retry-After") or headers.get("retry-after")):
            fail(f"{kick_off}: polling answered {status} without Retry-After")
        time.sleep(0.5)
    else:
        fail(f"{kick_off}: not complete within a minute")
    manifest = json.loads(body)
    for key in ("transactionTime", "request", "requiresAccessToken", "output", "error"):
        if key not in manifest:
            fail(f"{kick_off}: the manifest has no {key}")
    lines = 0
    for out in manifest["output"]:
        status, headers, body = request("GET", out["url"], token, {"Accept": "application/fhir+ndjson"})
        if status != 200 or not (headers.get("Content-Type") or headers.get("content-type", "")).startswith("application/fhir+ndjson"):
            fail(f"{out['url']}: {status} {headers.get('Content-Type')}")
        for n, line in enumerate(body.decode().splitlines(), 1):
            r = json.loads(line)
            if r["resourceType"] != out["type"]:
                fail(f"{out['url']} line {n}: a {r['resourceType']} in a {out['type']} file")
            validate(r, f"{out['url']} line {n}")
            lines += 1
    # Cancelling: the status URL is gone afterwards.
    status, _, _ = request("DELETE", poll, token)
    if status != 202:
        fail(f"{kick_off}: DELETE answered {status}")
    if request("GET", poll, token)[0] != 404:
        fail(f"{kick_off}: a cancelled export still answers")
    return lines


def main() -> None:
    doctor = login("dr.okafor@demo.nephrocare.test")
    patient = login("amara.diallo@demo.nephrocare.test")
    tech = login("tech.mendes@demo.nephrocare.test")
    admin = login("admin@demo.nephrocare.test")
    other = login("admin@riverside.nephrocare.test")

    caps = get("/metadata", None)
    if caps["fhirVersion"] != "4.0.1":
        fail("the CapabilityStatement is not R4")
    get("/CodeSystem/nephrocare-dialysis", doctor)

    patients = resources(get("/Patient", doctor), "Patient")
    if not patients:
        fail("the doctor lists no Patient")
    observed = 0
    for p in patients:
        pid = p["id"]
        get(f"/Patient/{pid}", doctor)
        ident = p["identifier"][0]
        found = resources(get(f"/Patient?identifier={ident['system']}|{ident['value']}", doctor), "Patient")
        if [x["id"] for x in found] != [pid]:
            fail("a search by identifier does not find exactly its patient")
        for d in resources(get(f"/Device?patient=Patient/{pid}", doctor), "Device"):
            get(f"/Device/{d['id']}", doctor)
        if "generalPractitioner" in p:
            get("/" + p["generalPractitioner"][0]["reference"], doctor)
        obs = walk(f"/Observation?patient={pid}&_count=7", doctor, 3)
        observed += len(obs)
        if obs:
            get(f"/Observation/{obs[0]['id']}", doctor)
            oldest = walk(f"/Observation?patient={pid}&_sort=date&_count=5", doctor, 2)
            times = [o["effectiveDateTime"] for o in oldest]
            if times != sorted(times):
                fail("_sort=date is not oldest first")
            day = obs[0]["effectiveDateTime"][:10]
            walk(f"/Observation?patient={pid}&code=http://loinc.org|8867-4,85354-9&date=ge{day}&date=lt2999-01-01", doctor, 2)
        for proc in resources(get(f"/Procedure?patient={pid}&_revinclude=Observation:part-of", doctor), "Procedure"):
            get(f"/Procedure/{proc['id']}", doctor)
        for issue in resources(get(f"/DetectedIssue?patient={pid}", doctor), "DetectedIssue"):
            get(f"/DetectedIssue/{issue['id']}", doctor)
    if observed == 0:
        fail("no Observation of any patient (the demo has readings)")
    groups = resources(get("/Group", doctor), "Group")

    # The patient reads their own record and readings; another patient's is refused.
    own = resources(get("/Patient", patient), "Patient")
    if len(own) != 1:
        fail("a patient lists other than themself")
    walk(f"/Observation?patient={own[0]['id']}&_count=5", patient, 2)
    others = [p for p in patients if p["id"] != own[0]["id"]]
    if others:
        get(f"/Observation?patient={others[0]['id']}", patient, want=403)
        get(f"/Patient/{others[0]['id']}", patient, want=403)
    # Another hospital sees nothing; admins read no clinical data; no token, no data.
    get(f"/Patient/{patients[0]['id']}", other, want=404)
    get(f"/Observation?patient={patients[0]['id']}", admin, want=403)
    get(f"/Observation?patient={patients[0]['id']}", None, want=401)
    get("/Patient/$export", tech, want=403)
    get("/Patient/$export?_type=Observation", admin, want=403)
    get("/Observation?patient=not-an-id", doctor, want=400)
    get("/Observation?patient=" + patients[0]["id"] + "&unknown=1", doctor, want=400)

    lines = export(doctor, "/Patient/$export")
    lines += export(doctor, f"/Group/{groups[0]['id']}/$export?_type=Patient,Observation,Procedure")
    lines += export(admin, "/Patient/$export")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"fhir: ok ({lines} exported lines; validated: {summary})")


if __name__ == "__main__":
    main()
