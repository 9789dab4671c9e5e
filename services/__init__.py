"""The three multitune services (api, suggester, worker) and the command line that starts them."""
