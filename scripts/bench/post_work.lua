-- wrk: POST /work with a JSON body.
wrk.method = "POST"
wrk.body = '{"add_up_to": 4}'
wrk.headers["Content-Type"] = "application/json"
