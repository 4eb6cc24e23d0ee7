/* placeholder: replaced by the server module */
int main(void)
{
    return 0;
}
