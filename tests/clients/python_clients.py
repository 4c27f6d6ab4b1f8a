"""Tellijn's PostgreSQL endpoint from the Python tools data stewards use.

Run by tests/e2e/sql_clients_e2e.rs: python3 python_clients.py URL ROOM. Prints one JSON object
with what each client answered; an exception in a client is reported under its name, not
raised, so the test can say which client failed and why.
"""
import json
import sys
import traceback

url, room = sys.argv[1], sys.argv[2]
out = {}


def attempt(name, f):
    try:
        out[name] = f()
    except Exception as e:  # reported to the test, which decides
        out[name] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
        traceback.print_exc(file=sys.stderr)


def psycopg_plain():
    import psycopg
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM occupancy").fetchone()[0]


def psycopg_params():
    import psycopg
    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT room, occupancy_max, minute FROM occupancy WHERE room = %s AND occupancy_max >= %s ORDER BY minute LIMIT 1",
            (room, 1),
        ).fetchone()
        return {"room": row[0], "max": row[1], "minute": row[2].isoformat()}


def psycopg_binary():
    import psycopg
    with psycopg.connect(url) as c:
        cur = c.cursor(binary=True)
        cur.execute("SELECT sum(occupancy_max), min(minute) FROM occupancy WHERE room = %s", (room,))
        total, first = cur.fetchone()
        return {"sum": int(total), "first": first.isoformat()}


def engine():
    import sqlalchemy as sa
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def sqlalchemy_core():
    import sqlalchemy as sa
    e = engine()
    t = sa.Table("occupancy", sa.MetaData(), sa.Column("room", sa.Text), sa.Column("occupancy_max", sa.Integer))
    with e.connect() as c:
        rows = c.execute(
            sa.select(t.c.room, sa.func.max(t.c.occupancy_max)).where(t.c.room == room).group_by(t.c.room)
        ).all()
        version = list(e.dialect.server_version_info)
    return {"rows": [[r[0], int(r[1])] for r in rows], "server_version_info": version}


def sqlalchemy_inspect():
    import sqlalchemy as sa
    i = sa.inspect(engine())
    return {
        "schemas": i.get_schema_names(),
        "tables": sorted(i.get_table_names()),
        "has_occupancy": i.has_table("occupancy"),
        "has_nothing": i.has_table("no_such_table"),
    }


def sqlalchemy_columns():
    import sqlalchemy as sa
    return [c["name"] for c in sa.inspect(engine()).get_columns("occupancy")]


def pandas_engine():
    import pandas as pd
    import sqlalchemy as sa
    df = pd.read_sql(
        sa.text("SELECT room, minute, occupancy_max FROM occupancy WHERE room = :room ORDER BY minute"),
        engine(),
        params={"room": room},
    )
    return {"rows": len(df), "max": int(df["occupancy_max"].max()), "minute_dtype": str(df["minute"].dtype)}


def pandas_raw():
    import pandas as pd
    import psycopg
    with psycopg.connect(url) as c:
        df = pd.read_sql("SELECT id, capacity FROM rooms ORDER BY id", c)
    return df["id"].tolist()


for name, f in [
    ("psycopg_plain", psycopg_plain),
    ("psycopg_params", psycopg_params),
    ("psycopg_binary", psycopg_binary),
    ("sqlalchemy_core", sqlalchemy_core),
    ("sqlalchemy_inspect", sqlalchemy_inspect),
    ("sqlalchemy_columns", sqlalchemy_columns),
    ("pandas_engine", pandas_engine),
    ("pandas_raw", pandas_raw),
]:
    attempt(name, f)
print(json.dumps(out))
