"""Seeds the FastAPI peer: one user (bcrypt at the service's cost) and N live sessions; prints the tokens."""
import sys
import uuid

import bcrypt
import redis

url, count, cost, tokens_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = redis.Redis.from_url(url)
r.hset("user:benchlogin", mapping={"id": str(uuid.uuid4()), "pw": bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(cost))})
pipe = r.pipeline(transaction=False)
tokens = [str(uuid.uuid4()) for _ in range(count)]
for token in tokens:
    pipe.set(f"session:{token}", str(uuid.uuid4()), ex=1800)
pipe.execute()
with open(tokens_file, "w") as out:
    out.write("\n".join(tokens) + "\n")
