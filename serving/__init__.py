"""Serving: top-k recommendations, similar movies, the cold-start policy, and the HTTP API with
its dashboard (`streamrec recommend`, `similar`, `serve`). Reads the model store and the sink DB;
never trains and never consumes Kafka."""
