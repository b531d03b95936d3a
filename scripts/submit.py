"""The file to hand `spark-submit`: any streamrec command, in the session spark-submit set up.

    spark-submit --master spark://... --jars "$(ls .cache/jvm/spark-kafka/*.jar | paste -sd,)" \
        scripts/submit.py stream --sink postgresql://...
"""

import sys

from streamrec.cli import main

sys.exit(main(sys.argv[1:]))
