# Strips an etcd .proto of gogoproto and google.api options and points its
# imports at proto/: python3 scripts/strip-etcd-proto.py in.proto > proto/x.proto
import re,sys
s=open(sys.argv[1]).read()
s=re.sub(r'import "gogoproto/gogo.proto";\n','',s)
s=re.sub(r'import "google/api/annotations.proto";\n','',s)
s=re.sub(r'option \(gogoproto\.[^;]*;\n','',s)
s=re.sub(r'\s*\[\(gogoproto[^\]]*\]','',s)
s=s.replace('import "etcd/mvcc/mvccpb/kv.proto"','import "kv.proto"').replace('import "etcd/auth/authpb/auth.proto"','import "auth.proto"').replace('import "etcd/etcdserver/etcdserverpb/rpc.proto"','import "rpc.proto"')
out=[];i=0
while True:
    j=s.find('option (google.api.http)',i)
    if j<0: out.append(s[i:]);break
    # cut back to line start
    ls=s.rfind('\n',0,j)+1
    out.append(s[i:ls])
    k=s.find('{',j);d=1;k+=1
    while d: 
        if s[k]=='{':d+=1
        elif s[k]=='}':d-=1
        k+=1
    # skip ';' and newline
    while s[k] in ' ;': k+=1
    if s[k]=='\n': k+=1
    i=k
s=''.join(out)
s=re.sub(r'\{\s*\}', '{}', s)
sys.stdout.write(s)
