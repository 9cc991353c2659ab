"""The console scripts, one module each (cps-train: train.py, cps-eval: evaluate.py, ...): the
command as a plain function (tests call these directly), its flags, and its main()."""
