"""Reading the inbox: fetching, classifying and acting on inbound mail."""
