"""`python -m skiplock.bench`: one bench worker process."""

from skiplock.bench.worker import main

if __name__ == "__main__":
    main()
