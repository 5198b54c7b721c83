from device.cli import main

# Guarded: the web page's model worker is a spawned child, which imports this module again.
if __name__ == "__main__":
    main(prog_name="peephole")
