#!/usr/bin/python3
"""An independent S3 client (boto3) for the blobs tests: it reads what MecaPy stored, and
stores what MecaPy must read, through the same --blobs URL.

  s3_readback.py URL get KEY OUTFILE   write the bytes of object KEY to OUTFILE
  s3_readback.py URL put KEY INFILE    store the bytes of INFILE as object KEY
  s3_readback.py URL list PREFIX       print the keys under PREFIX, one a line

KEY and PREFIX are blob keys: the URL's prefix= is put in front, as MecaPy does.
Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN).
Exit 0 on success, 3 when the object does not exist, 1 on any other failure (with a
sentence on stderr), 77 when boto3 is not installed (Debian: python3-boto3).
"""
import sys
import urllib.parse


def parse(url):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "s3" or not u.netloc:
        raise SystemExit("s3_readback.py: not an s3://BUCKET?... URL: %r" % url)
    q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
    region = q.get("region") or "us-east-1"
    endpoint = q.get("endpoint") or "https://s3.%s.amazonaws.com" % region
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    aws = host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
    path_style = q.get("path_style")
    path = (path_style in ("1", "true")) if path_style is not None else not aws
    prefix = q.get("prefix", "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return u.netloc, endpoint, region, path, prefix


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        print("s3_readback.py: boto3 is not installed (apt-get install python3-boto3)",
              file=sys.stderr)
        return 77
    bucket, endpoint, region, path_style, prefix = parse(argv[1])
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                      config=Config(s3={"addressing_style": "path" if path_style else "virtual"},
                                    retries={"max_attempts": 2}))
    verb, name = argv[2], prefix + argv[3]
    if verb == "get" and len(argv) == 5:
        try:
            data = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        except s3.exceptions.NoSuchKey:
            print("s3_readback.py: no object %r in bucket %r" % (name, bucket), file=sys.stderr)
            return 3
        with open(argv[4], "wb") as f:
            f.write(data)
        return 0
    if verb == "put" and len(argv) == 5:
        with open(argv[4], "rb") as f:
            s3.put_object(Bucket=bucket, Key=name, Body=f.read())
        return 0
    if verb == "list" and len(argv) == 4:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=name):
            for o in page.get("Contents", []):
                print(o["Key"][len(prefix):])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except SystemExit:
        raise
    except Exception as e:  # a sentence, not a traceback, for the C test's log
        print("s3_readback.py: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
