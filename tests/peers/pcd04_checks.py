"""Checks of an IHE PCD-04 Report Alert (ORU^R40^ORU_R40), written from IHE PCD TF-2
Revision 9.0 (Final Text, 2019-12-12) independently of the Rust builder: section 3.4.4.1.2
(static definition), appendix B.1 (MSH), B.5.1 (PID), B.6.1 (PV1), B.7.1 (OBR), B.8.5 and B.8.6
(OBX facets). Parses with python-hl7.
"""
import re

import hl7

PCD04_OID = "1.3.6.1.4.1.19376.1.6.1.4.1"  # TF-2 B.1, MSH-21 OID table
PHASES = {"tpoint", "start", "start_only", "continue", "end", "present", "update", "escalate",
          "inactivate", "acknowledged", "deescalate", "reset", "stop"}  # table B.8.5-4
STATES = {"inactive", "active", "latched"}  # B.8.5 alert state facet
INACTIVATION = {"enabled", "audio-paused", "audio-off", "alarm-paused", "alarm-off",
                "acknowledged", "alert-acknowledged"}  # B.8.5 inactivation state facet
PRIORITIES = {"PH", "PM", "PL", "PN"}  # table B.8.5-1 facet 6
TYPES = {"SP", "ST", "SA"}  # table B.8.5-1 facet 7
DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?[+-]\d{4}$")


def field(msg, seg, n, f, r=1, c=1, s=1):
    """Unescaped value of SEG[n]-f.r.c.s (1-based), '' when absent."""
    try:
        return msg.unescape(msg.extract_field(seg, n, f, r, c, s))
    except (KeyError, IndexError):
        return ""


def repetitions(msg, seg, n, f):
    """The unescaped first components of every repetition of SEG[n]-f."""
    out = []
    for r in range(1, 100):
        try:
            out.append(msg.unescape(msg.extract_field(seg, n, f, r, 1, 1)))
        except (KeyError, IndexError):
            break
    return [v for v in out if v]


def check(text):
    """Returns (summary, problems) for the message text."""
    msg = hl7.parse(text)
    problems = []

    def need(cond, what):
        if not cond:
            problems.append(what)

    names = [str(seg[0]) for seg in msg]
    # 3.4.4.1.2: MSH [PID [PV1]] [ORC] OBR {OBX ...}; PV1 only inside the PATIENT group.
    need(names[0] == "MSH", "MSH first")
    order = "".join("X" if n in ("OBX", "PRT", "NTE") else n for n in names)
    need(re.fullmatch(r"MSH(PID(PV1)?)?(ORC)?(OBRX*)+", order) is not None, f"segment order {names}")
    # B.1 MSH
    need(field(msg, "MSH", 1, 9, 1, 1) == "ORU" and field(msg, "MSH", 1, 9, 1, 2) == "R40"
         and field(msg, "MSH", 1, 9, 1, 3) == "ORU_R40", "MSH-9 ORU^R40^ORU_R40")
    need(field(msg, "MSH", 1, 3) != "", "MSH-3 sending application")
    need(DTM.match(field(msg, "MSH", 1, 7)) is not None, "MSH-7 with a time zone")
    need(field(msg, "MSH", 1, 10) != "", "MSH-10 control id")
    need(field(msg, "MSH", 1, 11) in ("P", "D", "T"), "MSH-11 processing id")
    need(field(msg, "MSH", 1, 12).startswith("2.6"), "MSH-12 2.6")
    need(field(msg, "MSH", 1, 15) == "AL", "MSH-15 AL")
    need(field(msg, "MSH", 1, 16) in ("AL", "NE", "ER", "SU"), "MSH-16")
    need(field(msg, "MSH", 1, 21, 1, 3) == PCD04_OID, "MSH-21 PCD-04 profile OID")
    # B.5.1 PID, B.6.1 PV1
    if "PID" in names:
        need(field(msg, "PID", 1, 3) != "" or field(msg, "PID", 1, 31) == "Y", "PID-3 or PID-31 Y")
    if "PV1" in names:
        need(field(msg, "PV1", 1, 3) != "", "PV1-3 location")
    # B.7.1 OBR
    need(names.count("OBR") >= 1, "an OBR")
    need(field(msg, "OBR", 1, 1) == "1", "OBR-1 1")
    need(field(msg, "OBR", 1, 3) != "", "OBR-3 filler order number")
    need(field(msg, "OBR", 1, 4) == "196616", "OBR-4 196616^MDC_EVT_ALARM^MDC")
    parent = field(msg, "OBR", 1, 29, 1, 2) or field(msg, "OBR", 1, 29, 1, 1)
    need(parent != "", "OBR-29 parent (the alert id)")
    # B.8, B.8.5, B.8.6 OBX
    count = names.count("OBX")
    need(count >= 7, "seven facets (B.8.5-2: all required)")
    subs, facets, by_code = [], [], {}
    for i in range(1, count + 1):
        need(field(msg, "OBX", i, 1) == str(i), f"OBX-1 {i}")
        need(field(msg, "OBX", i, 2) != "", f"OBX[{i}]-2 value type")
        need(field(msg, "OBX", i, 11) == "F", f"OBX[{i}]-11 F")
        sub = field(msg, "OBX", i, 4)
        subs.append(sub)
        parts = sub.split(".")
        facets.append(int(parts[4]) if len(parts) >= 5 and parts[4].isdigit() else -1)
        by_code.setdefault(field(msg, "OBX", i, 3), i)
    need(len(set(subs)) == len(subs), "OBX-4 distinct")
    need(all(f >= 1 for f in facets) and facets == sorted(facets), f"facets ascending {facets}")
    need(facets[:1] == [1], "facet 1, event identification, first")

    def value(code, allowed):
        i = by_code.get(code)
        vals = repetitions(msg, "OBX", i, 5) if i else []
        need(vals and all(v in allowed for v in vals), f"{code} value in {sorted(allowed)}")
        return vals[0] if vals else ""

    phase = value("68481", PHASES)
    value("68482", STATES)
    value("68483", INACTIVATION)
    priority = value("68484", PRIORITIES)
    kind = value("68485", TYPES)
    need(2 in facets, "facet 2, source identification")
    summary = {
        "control_id": field(msg, "MSH", 1, 10),
        "alert_id": parent,
        "phase": phase,
        "priority": priority,
        "kind": kind,
        "patient": field(msg, "PID", 1, 3) if "PID" in names else "",
    }
    return summary, problems
