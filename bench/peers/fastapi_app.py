"""The reference peer: login, verify and healthz written the way most teams would today.

FastAPI on uvicorn (uvloop, httptools), redis-py's asyncio client with the hiredis parser, bcrypt in a thread.
Tokens are stored as-is under session:<token> with a sliding TTL (GETEX), as connect-redis and friends do.
Run: uvicorn fastapi_app:app --workers 2 --loop uvloop --http httptools
"""
import os
import uuid

import bcrypt
import redis.asyncio as redis
from fastapi import FastAPI, Header, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

IDLE = int(os.environ.get("SESSION_IDLE_TIMEOUT", "1800"))
pool = redis.ConnectionPool.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=64)
r = redis.Redis(connection_pool=pool)
app = FastAPI()


class Credentials(BaseModel):
    username: str
    password: str


@app.post("/login")
async def login(credentials: Credentials):
    stored = await r.hget(f"user:{credentials.username.lower()}", "pw")
    ok = stored is not None and await run_in_threadpool(bcrypt.checkpw, credentials.password.encode(), stored)
    if not ok:
        raise HTTPException(status_code=401, detail="invalid_credentials")
    user_id = (await r.hget(f"user:{credentials.username.lower()}", "id")).decode()
    token = str(uuid.uuid4())
    await r.set(f"session:{token}", user_id, ex=IDLE)
    return {"token": token, "token_type": "Bearer", "expires_in": IDLE, "user_id": user_id}


@app.get("/verify")
async def verify(response: Response, authorization: str = Header(default="")):
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=401, detail="missing_token")
    user_id = await r.getex(f"session:{token}", ex=IDLE)
    if user_id is None:
        raise HTTPException(status_code=401, detail="invalid_token")
    response.headers["X-User-Id"] = user_id.decode()
    return {"user_id": user_id.decode()}


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
