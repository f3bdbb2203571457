from kit.migrations import run_env
from transactions.models import Base

run_env(Base.metadata)
